//! Tables of numbers read from CSV files (the `csv` crate does the
//! splitting: quoted fields, CRLF line ends, a byte order mark), with every
//! error naming the file, line and field.

use super::{Dataset, Float};
use std::fmt;
use std::io::Read;
use std::path::Path;

impl<I: Clone> Dataset<I, usize> {
    /// The class-index targets as one-hot vectors of `C` classes (for a
    /// `target y[C]` definition with `softmax_cross_entropy`).
    ///
    /// # Errors
    /// [`DataError::ClassOutOfRange`] naming the first sample whose class is not below `C`.
    pub fn one_hot<F: Float, const C: usize>(&self) -> Result<Dataset<I, [F; C]>, DataError> {
        let mut targets = Vec::with_capacity(self.len());
        for (sample, &label) in self.targets.iter().enumerate() {
            if label >= C {
                return Err(DataError::ClassOutOfRange {
                    sample,
                    label,
                    classes: C,
                });
            }
            let mut t = [F::ZERO; C];
            t[label] = F::ONE;
            targets.push(t);
        }
        Ok(Dataset::new(self.inputs.clone(), targets))
    }
}

/// Where a CSV value came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The file name or other source name given to the reader.
    pub source: String,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} line {}", self.source, self.line)
    }
}

/// What went wrong reading or converting data; every variant names the
/// file (or source name) and, where there is one, the line and field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{file}: {error}")]
    Io {
        /// The file name or source name.
        file: String,
        /// The underlying error.
        #[source]
        error: std::io::Error,
    },
    /// Reading failed part-way through the file (e.g. a corrupt compressed
    /// stream).
    #[error("{at}: {error}")]
    Read {
        /// The line being read.
        at: Location,
        /// The underlying error.
        #[source]
        error: std::io::Error,
    },
    /// A line that is not valid UTF-8 text.
    #[error(
        "{at}, field {field}: byte 0x{byte:02x} (byte {column} of the line) is not \
         valid UTF-8; save the file as UTF-8 text"
    )]
    NotUtf8 {
        /// Where.
        at: Location,
        /// 1-based field number of the first invalid byte.
        field: usize,
        /// The first invalid byte.
        byte: u8,
        /// 1-based byte position of that byte in the line.
        column: usize,
    },
    /// A delimiter that is not a single ASCII character.
    #[error("{file}: the delimiter {delimiter:?} is not an ASCII character; CSV delimiters are one byte")]
    Delimiter {
        /// The file name or source name.
        file: String,
        /// The delimiter asked for.
        delimiter: char,
    },
    /// No data rows.
    #[error("{file}: no data rows")]
    Empty {
        /// The file name or source name.
        file: String,
    },
    /// A row with a different number of fields than the header (if read)
    /// or else the first data row.
    #[error("{at}: expected {expected} fields, found {found}")]
    FieldCount {
        /// Where.
        at: Location,
        /// Fields of the header or first data row.
        expected: usize,
        /// Fields of this row.
        found: usize,
    },
    /// A cell that is not a number.
    #[error("{at}, field {field}: `{}` is not a number", Shown(cell))]
    NotANumber {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The cell's text.
        cell: String,
    },
    /// A class label that is not a non-negative integer.
    #[error("{at}, field {field}: class label `{value}` is not a non-negative integer")]
    LabelNotInteger {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The value read.
        value: f64,
    },
    /// A class label not below the number of classes.
    #[error(
        "{at}, field {field}: class label {label} is out of range for {classes} classes (0..{classes})"
    )]
    LabelOutOfRange {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The label read.
        label: usize,
        /// The number of classes expected.
        classes: usize,
    },
    /// A column index beyond the table.
    #[error("{file}: no column {column} (0-based); the table has {columns} columns")]
    NoSuchColumn {
        /// The file name or source name.
        file: String,
        /// The 0-based column asked for.
        column: usize,
        /// Columns in the table.
        columns: usize,
    },
    /// A cell that parses as a number but is NaN or infinite.
    #[error("{at}, field {field}: `{}` is not a finite number", Shown(cell))]
    NotFinite {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The cell's text.
        cell: String,
    },
    /// A header has no column of this name.
    #[error("{file}: no column named `{name}`; the header has {}", Quoted(columns))]
    NoSuchColumnName {
        /// The file name or source name.
        file: String,
        /// The name asked for.
        name: String,
        /// The header's names.
        columns: Vec<String>,
    },
    /// A class index not below the number of classes (one-hot conversion).
    #[error("sample {sample}: class {label} is out of range for {classes} classes (0..{classes})")]
    ClassOutOfRange {
        /// 0-based sample index.
        sample: usize,
        /// The class index.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// The table's feature columns do not match the input size asked for.
    #[error("{file}: expected {expected} feature columns, found {found}")]
    FeatureCount {
        /// The file name or source name.
        file: String,
        /// Features the input type holds (`N` of `[T; N]`).
        expected: usize,
        /// Feature columns in the table.
        found: usize,
    },
}

/// Names in backquotes, separated by commas.
struct Quoted<'a>(&'a [String]);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}`{name}`")?;
        }
        Ok(())
    }
}

/// A cell's text with invisible characters (control characters, a byte
/// order mark, other format characters) written as `\u{..}` escapes, so
/// an error message shows why the text is not a number.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            let invisible = c.is_control()
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}');
            if invisible {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// The UTF-8 byte order mark some editors put at the start of a text file.
const BOM: &[u8] = b"\xef\xbb\xbf";

/// A table of numbers read from CSV: rows of equal length, each remembering
/// its line in the source for error messages.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    source: String,
    header: Option<String>,
    names: Vec<String>,
    columns: usize,
    values: Vec<f64>,
    lines: Vec<usize>,
}

impl Table {
    /// The source name (file path) the table was read from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The header line, if the reader was told to skip one.
    pub fn header(&self) -> Option<&str> {
        self.header.as_deref()
    }

    /// The 0-based index of the header column called `name` (cells are
    /// trimmed and unquoted as data cells are), for choosing the label column
    /// by name.
    ///
    /// ```
    /// # use nn_runtime::Csv;
    /// let t = Csv::new().header(true).read("a,label,b\n1,0,2\n".as_bytes(), "t.csv").unwrap();
    /// assert_eq!(t.column_index("label").unwrap(), 1);
    /// assert!(t.column_index("class").is_err());
    /// ```
    ///
    /// # Errors
    /// If there is no header or no column of that name.
    pub fn column_index(&self, name: &str) -> Result<usize, DataError> {
        let names = self.column_names();
        names
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| DataError::NoSuchColumnName {
                file: self.source.clone(),
                name: name.to_owned(),
                columns: names,
            })
    }

    /// The header's column names (empty without a header).
    pub fn column_names(&self) -> Vec<String> {
        self.names.clone()
    }

    /// Number of data rows.
    pub fn rows(&self) -> usize {
        self.lines.len()
    }

    /// Number of columns (fields per row).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Row `i` (0-based, header not counted).
    ///
    /// # Panics
    /// If `i >= self.rows()`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.columns..(i + 1) * self.columns]
    }

    /// All rows in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[f64]> + '_ {
        // `max(1)`: a table always has at least one column.
        self.values.chunks_exact(self.columns.max(1))
    }

    /// The 1-based source line of row `i`.
    pub fn line_of(&self, i: usize) -> usize {
        self.lines[i]
    }

    fn at(&self, row: usize) -> Location {
        Location {
            source: self.source.clone(),
            line: self.lines[row],
        }
    }

    fn check_column(&self, column: usize) -> Result<(), DataError> {
        if column >= self.columns {
            return Err(DataError::NoSuchColumn {
                file: self.source.clone(),
                column,
                columns: self.columns,
            });
        }
        Ok(())
    }

    /// Features from every column but `skip`, in order, converted to `F`.
    fn features<F: Float, const N: usize>(
        &self,
        row: usize,
        skip: impl Fn(usize) -> bool,
    ) -> [F; N] {
        let mut x = [F::ZERO; N];
        let values = self.row(row).iter().enumerate().filter(|(c, _)| !skip(*c));
        for (slot, (_, &v)) in x.iter_mut().zip(values) {
            *slot = F::from_f64(v);
        }
        x
    }

    /// A classification data set: the class index from `label_column`
    /// (0-based), the features from all other columns in order.
    ///
    /// ```
    /// # use nn_runtime::data::read_csv;
    /// let table = read_csv("1,2,0\n3,4,2\n".as_bytes(), "inline.csv").unwrap();
    /// let data = table.classification::<f32, 2>(2, 3).unwrap();
    /// assert_eq!(data.inputs[1], [3.0, 4.0]);
    /// assert_eq!(data.targets, [0, 2]);
    /// ```
    ///
    /// # Errors
    /// If the column does not exist, the table does not have exactly `N`
    /// other columns, or a label is not an integer in `0..n_classes`.
    pub fn classification<F: Float, const N: usize>(
        &self,
        label_column: usize,
        n_classes: usize,
    ) -> Result<Dataset<[F; N], usize>, DataError> {
        self.check_column(label_column)?;
        self.check_features(N, 1)?;
        let mut inputs = Vec::with_capacity(self.rows());
        let mut targets = Vec::with_capacity(self.rows());
        for r in 0..self.rows() {
            let value = self.row(r)[label_column];
            let field = label_column + 1;
            if !(value >= 0.0 && value.fract() == 0.0 && value < usize::MAX as f64) {
                return Err(DataError::LabelNotInteger {
                    at: self.at(r),
                    field,
                    value,
                });
            }
            let label = value as usize;
            if label >= n_classes {
                return Err(DataError::LabelOutOfRange {
                    at: self.at(r),
                    field,
                    label,
                    classes: n_classes,
                });
            }
            inputs.push(self.features(r, |c| c == label_column));
            targets.push(label);
        }
        Ok(Dataset { inputs, targets })
    }

    /// A classification data set with one-hot targets of `C` classes (for a
    /// `target y[C]` definition): as [`classification`](Table::classification).
    ///
    /// # Errors
    /// As [`classification`](Table::classification).
    pub fn classification_one_hot<F: Float, const N: usize, const C: usize>(
        &self,
        label_column: usize,
    ) -> Result<Dataset<[F; N], [F; C]>, DataError> {
        self.classification::<F, N>(label_column, C)?.one_hot()
    }

    /// A regression data set: the targets from `target_columns` (0-based, in
    /// the order given), the features from all other columns in order.
    ///
    /// # Errors
    /// If a column does not exist or the table does not have exactly `N`
    /// other columns.
    pub fn regression<F: Float, const N: usize, const M: usize>(
        &self,
        target_columns: [usize; M],
    ) -> Result<Dataset<[F; N], [F; M]>, DataError> {
        for &c in &target_columns {
            self.check_column(c)?;
        }
        let is_target = |c: usize| target_columns.contains(&c);
        let targets_used = (0..self.columns).filter(|&c| is_target(c)).count();
        self.check_features(N, targets_used)?;
        let mut inputs = Vec::with_capacity(self.rows());
        let mut targets = Vec::with_capacity(self.rows());
        for r in 0..self.rows() {
            let row = self.row(r);
            inputs.push(self.features(r, is_target));
            targets.push(target_columns.map(|c| F::from_f64(row[c])));
        }
        Ok(Dataset { inputs, targets })
    }

    fn check_features(&self, n: usize, non_features: usize) -> Result<(), DataError> {
        let found = self.columns - non_features;
        if found != n {
            return Err(DataError::FeatureCount {
                file: self.source.clone(),
                expected: n,
                found,
            });
        }
        Ok(())
    }
}

/// CSV reader options: numbers only, UTF-8 text.
///
/// The `csv` crate splits records, so quoted fields (with delimiters or
/// line breaks inside), CRLF line ends and a byte order mark at the start
/// of the file are read as a spreadsheet writes them. Cells are trimmed;
/// blank lines are skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csv {
    delimiter: char,
    header: bool,
}

impl Default for Csv {
    fn default() -> Self {
        Csv {
            delimiter: ',',
            header: false,
        }
    }
}

impl Csv {
    /// Comma-separated, no header.
    pub fn new() -> Self {
        Self::default()
    }

    /// Splits fields at `delimiter` (an ASCII character) instead of `,`.
    pub fn delimiter(mut self, delimiter: char) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Whether the first non-blank line is a header to skip (kept in [`Table::header`]).
    pub fn header(mut self, header: bool) -> Self {
        self.header = header;
        self
    }

    /// Reads a table from `reader`; `source` names it in errors (a file path).
    ///
    /// # Errors
    /// See [`DataError`].
    pub fn read<R: Read>(&self, mut reader: R, source: &str) -> Result<Table, DataError> {
        let location = |line| Location {
            source: source.to_owned(),
            line,
        };
        let delimiter = match u8::try_from(self.delimiter) {
            Ok(d) if d.is_ascii() => d,
            _ => {
                return Err(DataError::Delimiter {
                    file: source.to_owned(),
                    delimiter: self.delimiter,
                })
            }
        };
        let mut bytes = Vec::new();
        if let Err(error) = reader.read_to_end(&mut bytes) {
            // `read_to_end` keeps what it read before the failure.
            let line = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(DataError::Read {
                at: location(line),
                error,
            });
        }
        let text = bytes.strip_prefix(BOM).unwrap_or(&bytes);
        if let Err(e) = std::str::from_utf8(text) {
            return Err(not_utf8(text, e.valid_up_to(), delimiter, location));
        }
        let mut records = ::csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(false)
            .flexible(true)
            .from_reader(text);
        let mut table = Table {
            source: source.to_owned(),
            header: None,
            names: Vec::new(),
            columns: 0,
            values: Vec::new(),
            lines: Vec::new(),
        };
        let mut want_header = self.header;
        let mut record = ::csv::StringRecord::new();
        // Lines are counted here: the reader's own record positions do not
        // count the blank lines it skips before a record.
        let newlines = |bytes: &[u8]| bytes.iter().filter(|&&b| b == b'\n').count();
        let (mut end, mut lines_before) = (0, 0);
        loop {
            let read = records.read_record(&mut record);
            let start = end
                + text[end..]
                    .iter()
                    .take_while(|b| matches!(b, b'\n' | b'\r'))
                    .count();
            lines_before += newlines(&text[end..start]);
            let line = lines_before + 1;
            match read {
                Ok(true) => {}
                Ok(false) => break,
                // the text is in memory and checked UTF-8 and the reader is
                // flexible: it fails only as a read would
                Err(e) => {
                    return Err(DataError::Read {
                        at: location(line),
                        error: e.into(),
                    });
                }
            }
            end = (records.position().byte() as usize).clamp(start, text.len());
            lines_before += newlines(&text[start..end]);
            if record.iter().all(|cell| cell.trim().is_empty()) && record.len() <= 1 {
                continue;
            }
            if want_header {
                want_header = false;
                table.header = Some(
                    record
                        .iter()
                        .collect::<Vec<_>>()
                        .join(&self.delimiter.to_string()),
                );
                table.names = record.iter().map(|c| c.trim().to_owned()).collect();
                table.columns = record.len();
                continue;
            }
            let before = table.values.len();
            for (i, cell) in record.iter().enumerate() {
                let value: f64 = cell.trim().parse().map_err(|_| DataError::NotANumber {
                    at: location(line),
                    field: i + 1,
                    cell: cell.to_owned(),
                })?;
                if !value.is_finite() {
                    return Err(DataError::NotFinite {
                        at: location(line),
                        field: i + 1,
                        cell: cell.to_owned(),
                    });
                }
                table.values.push(value);
            }
            let found = table.values.len() - before;
            if table.lines.is_empty() && table.header.is_none() {
                table.columns = found;
            } else if found != table.columns {
                return Err(DataError::FieldCount {
                    at: location(line),
                    expected: table.columns,
                    found,
                });
            }
            table.lines.push(line);
        }
        if table.lines.is_empty() {
            return Err(DataError::Empty {
                file: source.to_owned(),
            });
        }
        Ok(table)
    }

    /// Opens and reads the file at `path`; errors name the path.
    ///
    /// The file is read as plain text: decompress `.gz` files in the caller
    /// (e.g. `flate2::read::GzDecoder`) and pass the decoder to [`read`](Csv::read).
    ///
    /// # Errors
    /// See [`DataError`].
    pub fn read_path(&self, path: impl AsRef<Path>) -> Result<Table, DataError> {
        let path = path.as_ref();
        let source = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|error| DataError::Io {
            file: source.clone(),
            error,
        })?;
        self.read(file, &source)
    }
}

/// The error for the first byte of `text` that is not UTF-8 (at `bad`):
/// its line, its field (delimiters before it on the line, plus one) and its
/// position in the line.
fn not_utf8(
    text: &[u8],
    bad: usize,
    delimiter: u8,
    location: impl Fn(usize) -> Location,
) -> DataError {
    let before = &text[..bad];
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let in_line = &before[line_start..];
    DataError::NotUtf8 {
        at: location(before.iter().filter(|&&b| b == b'\n').count() + 1),
        field: in_line.iter().filter(|&&b| b == delimiter).count() + 1,
        byte: text[bad],
        column: in_line.len() + 1,
    }
}

/// Reads comma-separated numbers without a header from `reader`; `source`
/// names it in errors. Use [`Csv`] for other options.
///
/// # Errors
/// See [`DataError`].
pub fn read_csv<R: Read>(reader: R, source: &str) -> Result<Table, DataError> {
    Csv::new().read(reader, source)
}

/// Reads comma-separated numbers without a header from the file at `path`.
///
/// # Errors
/// See [`DataError`].
pub fn read_csv_path(path: impl AsRef<Path>) -> Result<Table, DataError> {
    Csv::new().read_path(path)
}

#[cfg(test)]
mod tests {
    use super::super::argmax;
    use super::*;

    fn err(text: &str) -> String {
        read_csv(text.as_bytes(), "digits.csv")
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_numbers_with_positions_and_options() {
        let t2 = Csv::new()
            .delimiter(';')
            .header(true)
            .read("a;b\n\n 1 ; 2.5\r\n\"3\";-4e1\n\n".as_bytes(), "x.csv")
            .unwrap();
        assert_eq!((t2.rows(), t2.columns()), (2, 2));
        assert_eq!(t2.row(0), [1.0, 2.5]);
        assert_eq!(t2.row(1), [3.0, -40.0]);
        assert_eq!((t2.line_of(0), t2.line_of(1)), (3, 4));
        assert_eq!(t2.iter().count(), 2);
        assert_eq!(t2.source(), "x.csv");
        assert_eq!(t2.header(), Some("a;b"));
        // With the default delimiter a `;` row is one non-numeric field.
        let e = Csv::new()
            .header(true)
            .read("a;b\n1;2\n".as_bytes(), "x.csv")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.csv line 2, field 1: `1;2` is not a number"
        );
    }

    #[test]
    fn quoted_fields_crlf_and_delimiters() {
        // What a spreadsheet writes: quoted names holding the delimiter, CRLF.
        let t = Csv::new()
            .header(true)
            .read(
                "\"x, mm\",label\r\n\r\n1.5,\"2\"\r\n3,\" 4 \"\r\n".as_bytes(),
                "s.csv",
            )
            .unwrap();
        assert_eq!(t.column_names(), ["x, mm", "label"]);
        assert_eq!(t.column_index("x, mm").unwrap(), 0);
        assert_eq!((t.row(0), t.row(1)), (&[1.5, 2.0][..], &[3.0, 4.0][..]));
        assert_eq!((t.line_of(0), t.line_of(1)), (3, 4));
        // A field spanning lines: the next record's line counts them.
        let e = read_csv("1,\"2\n\"\n3,x\n".as_bytes(), "m.csv").unwrap_err();
        assert_eq!(e.to_string(), "m.csv line 3, field 2: `x` is not a number");
        let e = Csv::new()
            .delimiter('→')
            .read("1→2\n".as_bytes(), "u.csv")
            .unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Delimiter {
                    delimiter: '→', ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("u.csv: the delimiter '→' is not an ASCII"),
            "{e}"
        );
    }

    #[test]
    fn csv_errors_name_file_line_and_field() {
        let rows = "1,2,3\n".repeat(16);
        assert_eq!(
            err(&format!("{rows}1,2\n")),
            "digits.csv line 17: expected 3 fields, found 2"
        );
        assert_eq!(
            err("1,2,3\n4, x5 ,6\n"),
            "digits.csv line 2, field 2: ` x5 ` is not a number"
        );
        assert_eq!(
            err("1,,3\n"),
            "digits.csv line 1, field 2: `` is not a number"
        );
        assert_eq!(err("\n  \n"), "digits.csv: no data rows");
        assert_eq!(
            Csv::new()
                .header(true)
                .read("h1,h2\n".as_bytes(), "only-header.csv")
                .unwrap_err()
                .to_string(),
            "only-header.csv: no data rows"
        );
    }

    #[test]
    fn malformed_files_are_errors_with_line_and_field() {
        // Wrong column count: against the header when there is one.
        let e = Csv::new()
            .header(true)
            .read("a,b,label\n1,2,0\n3,4\n".as_bytes(), "h.csv")
            .unwrap_err();
        assert_eq!(e.to_string(), "h.csv line 3: expected 3 fields, found 2");
        let e = Csv::new()
            .header(true)
            .read("a,b\n1,2,0\n".as_bytes(), "h.csv")
            .unwrap_err();
        assert_eq!(e.to_string(), "h.csv line 2: expected 2 fields, found 3");
        // A longer row after blank lines: the line number counts them.
        assert_eq!(
            err("1,2\n\n\n3,4,5\n"),
            "digits.csv line 4: expected 2 fields, found 3"
        );
        // Non-numeric cells anywhere, quoted or not (the cell is shown
        // without its quotes), and non-finite numbers.
        assert_eq!(
            err("1,2\n3,\"four\"\n"),
            "digits.csv line 2, field 2: `four` is not a number"
        );
        assert_eq!(
            err("0.5,1e3\n2,NaN\n"),
            "digits.csv line 2, field 2: `NaN` is not a finite number"
        );
        assert_eq!(
            err("inf,1\n"),
            "digits.csv line 1, field 1: `inf` is not a finite number"
        );
        // Empty: nothing at all, only blank lines, only a header.
        assert_eq!(err(""), "digits.csv: no data rows");
        assert!(matches!(
            read_csv("".as_bytes(), "e.csv"),
            Err(DataError::Empty { .. })
        ));
        // Not UTF-8: the line, field and byte.
        let e = read_csv(&b"1,2\n3,4\n1,\xff\n"[..], "bin.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bin.csv line 3, field 2: byte 0xff (byte 3 of the line) is not valid UTF-8; \
             save the file as UTF-8 text"
        );
    }

    #[test]
    fn encodings_byte_order_marks_and_invisible_characters() {
        // A byte order mark at the start is skipped, with a header or without.
        let t = read_csv(&b"\xef\xbb\xbf1,2\n3,4\n"[..], "bom.csv").unwrap();
        assert_eq!(t.row(0), [1.0, 2.0]);
        let t = Csv::new()
            .header(true)
            .read(&b"\xef\xbb\xbfpx,label\n1,0\n"[..], "bom.csv")
            .unwrap();
        assert_eq!(t.column_index("px").unwrap(), 0);
        // Anywhere else it is a character that is not a number, and shown.
        assert_eq!(
            err("1,2\n\u{feff}3,4\n"),
            "digits.csv line 2, field 1: `\\u{feff}3` is not a number"
        );
        assert_eq!(
            err("1,2\t\u{0}\n"),
            "digits.csv line 1, field 2: `2\\u{9}\\u{0}` is not a number"
        );
        // Not UTF-8 (Latin-1 `é`): line and field, in the header too.
        let e = Csv::new()
            .header(true)
            .read(&b"a,caf\xe9\n1,2\n"[..], "latin1.csv")
            .unwrap_err();
        assert!(matches!(
            e,
            DataError::NotUtf8 {
                field: 2,
                byte: 0xe9,
                column: 6,
                ..
            }
        ));
        assert!(
            e.to_string()
                .starts_with("latin1.csv line 1, field 2: byte 0xe9 (byte 6 of the line)"),
            "{e}"
        );
        // UTF-16 (what some spreadsheets export): the first byte.
        let e = read_csv(&b"\xff\xfe1\x00"[..], "utf16.csv").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("utf16.csv line 1, field 1: byte 0xff"),
            "{e}"
        );
        // Another delimiter counts fields by it.
        let e = Csv::new()
            .delimiter(';')
            .read(&b"1;2;\x80\n"[..], "semi.csv")
            .unwrap_err();
        assert!(matches!(e, DataError::NotUtf8 { field: 3, .. }), "{e:?}");
    }

    #[test]
    fn a_read_failing_part_way_names_the_line() {
        /// Yields `good`, then fails.
        struct Failing<'a>(&'a [u8]);
        impl Read for Failing<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("corrupt deflate stream"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let e = read_csv(Failing(b"1,2\n3,4\n5,"), "digits.csv.gz").unwrap_err();
        assert_eq!(
            e.to_string(),
            "digits.csv.gz line 3: corrupt deflate stream"
        );
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn malformed_file_on_disk_names_the_path() {
        let dir = std::env::temp_dir().join(format!("nn-runtime-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        std::fs::write(&path, "x,y,label\n0.1,0.2,1\n0.3,oops,0\n").unwrap();
        let e = Csv::new().header(true).read_path(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} line 3, field 2: `oops` is not a number", path.display())
        );
        std::fs::write(&path, "").unwrap();
        let e = read_csv_path(&path).unwrap_err();
        assert_eq!(e.to_string(), format!("{}: no data rows", path.display()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn label_column_by_header_name_and_one_hot_targets() {
        let t = Csv::new()
            .header(true)
            .read("\"px0\", label ,px1\n1,2,3\n4,0,6\n".as_bytes(), "n.csv")
            .unwrap();
        assert_eq!(t.column_names(), ["px0", "label", "px1"]);
        let label = t.column_index("label").unwrap();
        assert_eq!(label, 1);
        assert_eq!(
            t.column_index("class").unwrap_err().to_string(),
            "n.csv: no column named `class`; the header has `px0`, `label`, `px1`"
        );
        let d = t.classification_one_hot::<f32, 2, 3>(label).unwrap();
        assert_eq!(d.inputs, [[1.0, 3.0], [4.0, 6.0]]);
        assert_eq!(d.targets, [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]);
        assert_eq!(d.class_indices().targets, [2, 0]);
        let classes = Dataset::new(vec![(), ()], vec![1usize, 4]);
        assert_eq!(
            classes.one_hot::<f64, 3>().unwrap_err().to_string(),
            "sample 1: class 4 is out of range for 3 classes (0..3)"
        );
        assert_eq!(argmax(&[0.5f32, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let e = read_csv_path("/nonexistent/dir/digits.csv").unwrap_err();
        assert!(matches!(e, DataError::Io { .. }));
        let msg = e.to_string();
        assert!(msg.starts_with("/nonexistent/dir/digits.csv: "), "{msg}");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn reads_a_real_file() {
        let dir = std::env::temp_dir().join(format!("nn-runtime-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("iris-head.csv");
        std::fs::write(
            &path,
            "150,4,setosa,versicolor,virginica\n5.1,3.5,1.4,0.2,0\n7.0,3.2,4.7,1.4,1\n6.3,3.3,6.0,2.5,2\n",
        )
        .unwrap();
        let t = Csv::new().header(true).read_path(&path).unwrap();
        let d = t.classification::<f64, 4>(4, 3).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.inputs[1], [7.0, 3.2, 4.7, 1.4]);
        assert_eq!(d.targets, [0, 1, 2]);
        std::fs::write(&path, "5.1,3.5,1.4,0.2,0\n7.0,3.2,4.7,1.4,3\n").unwrap();
        let e = read_csv_path(&path)
            .unwrap()
            .classification::<f32, 4>(4, 3)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{} line 2, field 5: class label 3 is out of range for 3 classes (0..3)",
                path.display()
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn classification_checks_labels_columns_and_feature_count() {
        let t = read_csv("0,1,2\n1.5,4,5\n".as_bytes(), "c.csv").unwrap();
        assert_eq!(
            t.classification::<f32, 2>(0, 3).unwrap_err().to_string(),
            "c.csv line 2, field 1: class label `1.5` is not a non-negative integer"
        );
        let t = read_csv("0,1,2\n-1,4,5\n".as_bytes(), "c.csv").unwrap();
        assert!(matches!(
            t.classification::<f32, 2>(0, 3),
            Err(DataError::LabelNotInteger { .. })
        ));
        assert_eq!(
            t.classification::<f32, 3>(0, 3).unwrap_err().to_string(),
            "c.csv: expected 3 feature columns, found 2"
        );
        assert_eq!(
            t.classification::<f32, 2>(3, 3).unwrap_err().to_string(),
            "c.csv: no column 3 (0-based); the table has 3 columns"
        );
        // The label may sit in any column; features keep their order.
        let t = read_csv("7,1,8\n9,0,6\n".as_bytes(), "c.csv").unwrap();
        let d = t.classification::<f64, 2>(1, 2).unwrap();
        assert_eq!(d.inputs, [[7.0, 8.0], [9.0, 6.0]]);
        assert_eq!(d.targets, [1, 0]);
    }

    #[test]
    fn regression_takes_target_columns() {
        let t = read_csv("1,2,3,4\n5,6,7,8\n".as_bytes(), "r.csv").unwrap();
        let d = t.regression::<f32, 2, 2>([3, 0]).unwrap();
        assert_eq!(d.inputs, [[2.0, 3.0], [6.0, 7.0]]);
        assert_eq!(d.targets, [[4.0, 1.0], [8.0, 5.0]]);
        assert_eq!(
            t.regression::<f32, 2, 1>([1]).unwrap_err().to_string(),
            "r.csv: expected 2 feature columns, found 3"
        );
        assert!(t.regression::<f32, 3, 1>([9]).is_err());
    }
}
