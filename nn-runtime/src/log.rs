//! Per-epoch metrics written to a file as training runs
//! ([`Trainer::log_to`](crate::Trainer::log_to)): CSV with a header, or JSON
//! lines, one record per epoch, flushed after each so that a run stopped
//! part-way keeps every finished epoch.

use crate::train::EpochReport;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// How the records are written, from the file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `.jsonl`, `.ndjson` or `.json`: one JSON object per line.
    JsonLines,
    /// Anything else: comma-separated values under a header line.
    Csv,
}

/// The columns (CSV) or keys (JSON), in order; a missing value (no
/// validation set, no learning rate) is an empty CSV field or a JSON `null`.
const COLUMNS: [&str; 7] = [
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
];

/// An open metrics file.
pub(crate) struct MetricsLog {
    path: PathBuf,
    format: Format,
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Creates (or truncates) the file at `path` and, for CSV, writes the header.
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl" | "ndjson" | "json") => Format::JsonLines,
            _ => Format::Csv,
        };
        let mut log = MetricsLog {
            path: path.to_owned(),
            format,
            out: BufWriter::new(File::create(path)?),
        };
        if format == Format::Csv {
            writeln!(log.out, "{}", COLUMNS.join(","))?;
            log.out.flush()?;
        }
        Ok(log)
    }

    /// The file's path, for error messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one epoch's record and flushes it to the file.
    pub(crate) fn write(&mut self, r: &EpochReport) -> io::Result<()> {
        let values = [
            Some(r.epoch as f64),
            Some(r.loss),
            Some(r.accuracy),
            r.val_loss,
            r.val_accuracy,
            r.learning_rate,
            Some(r.duration.as_secs_f64()),
        ];
        let line = match self.format {
            Format::Csv => values
                .iter()
                .map(|v| v.map_or(String::new(), |v| v.to_string()))
                .collect::<Vec<_>>()
                .join(","),
            Format::JsonLines => {
                let fields: Vec<String> = COLUMNS
                    .iter()
                    .zip(values)
                    .map(|(k, v)| format!("\"{k}\":{}", json_number(v)))
                    .collect();
                format!("{{{}}}", fields.join(","))
            }
        };
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }
}

/// A JSON value for `v`: the number, or `null` when there is none or it is
/// not finite (JSON has no NaN).
fn json_number(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => v.to_string(),
        _ => "null".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn report(epoch: usize, val: Option<f64>) -> EpochReport {
        EpochReport {
            epoch,
            loss: 0.25,
            accuracy: 0.5,
            val_loss: val,
            val_accuracy: val.map(|_| 0.75),
            learning_rate: Some(0.01),
            improved: true,
            duration: Duration::from_millis(1500),
        }
    }

    #[test]
    fn csv_and_json_lines_by_extension() {
        let dir = std::env::temp_dir().join(format!("nn-runtime-log-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("metrics.csv");
        let mut log = MetricsLog::create(&csv).unwrap();
        log.write(&report(1, Some(0.5))).unwrap();
        log.write(&report(2, None)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&csv).unwrap(),
            "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds\n\
             1,0.25,0.5,0.5,0.75,0.01,1.5\n\
             2,0.25,0.5,,,0.01,1.5\n"
        );
        let json = dir.join("metrics.jsonl");
        let mut log = MetricsLog::create(&json).unwrap();
        log.write(&report(1, None)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&json).unwrap(),
            "{\"epoch\":1,\"loss\":0.25,\"accuracy\":0.5,\"val_loss\":null,\
             \"val_accuracy\":null,\"learning_rate\":0.01,\"seconds\":1.5}\n"
        );
        assert!(MetricsLog::create(&dir.join("no/such/dir/m.csv")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
