//! Data sets: samples in memory, seeded splits, CSV reading and feature scaling.
//!
//! Positions in error messages are 1-based (line 17, field 65) as in an
//! editor; column indices passed to the API are 0-based, as in Rust.

use crate::float::Float;
use crate::rng::Rng;
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Samples for training or evaluation: `inputs[i]` goes with `targets[i]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset<I, T> {
    /// One input per sample.
    pub inputs: Vec<I>,
    /// One target per sample, in the same order.
    pub targets: Vec<T>,
}

impl<I, T> Dataset<I, T> {
    /// A data set from inputs and their targets.
    ///
    /// # Panics
    /// If the two vectors have different lengths.
    pub fn new(inputs: Vec<I>, targets: Vec<T>) -> Self {
        assert_eq!(
            inputs.len(),
            targets.len(),
            "Dataset::new: {} inputs but {} targets",
            inputs.len(),
            targets.len()
        );
        Dataset { inputs, targets }
    }

    /// A data set copied from slices (handy for literals such as XOR's four samples).
    ///
    /// # Panics
    /// If the two slices have different lengths.
    pub fn from_slices(inputs: &[I], targets: &[T]) -> Self
    where
        I: Clone,
        T: Clone,
    {
        Self::new(inputs.to_vec(), targets.to_vec())
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.inputs.len()
    }

    /// `true` when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    /// Sample `i`: its input and target.
    pub fn get(&self, i: usize) -> Option<(&I, &T)> {
        Some((self.inputs.get(i)?, self.targets.get(i)?))
    }

    /// All samples in order, as `(input, target)` pairs.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&I, &T)> + '_ {
        self.inputs.iter().zip(self.targets.iter())
    }

    /// The samples at `indices`, in that order (repeats allowed).
    ///
    /// # Panics
    /// If an index is out of range.
    pub fn subset(&self, indices: &[usize]) -> Self
    where
        I: Clone,
        T: Clone,
    {
        Dataset {
            inputs: indices.iter().map(|&i| self.inputs[i].clone()).collect(),
            targets: indices.iter().map(|&i| self.targets[i].clone()).collect(),
        }
    }

    /// Shuffles the samples with `seed`, then splits them: the first part
    /// holds `round(fraction · len)` samples (`0.8` for an 80/20 train /
    /// validation split), the second the rest. The same seed gives the same
    /// split.
    ///
    /// # Panics
    /// If `fraction` is not within `[0, 1]`.
    pub fn split(&self, fraction: f64, seed: u64) -> (Self, Self)
    where
        I: Clone,
        T: Clone,
    {
        assert!(
            (0.0..=1.0).contains(&fraction),
            "Dataset::split: fraction {fraction} is not within [0, 1]"
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let first = ((fraction * self.len() as f64).round() as usize).min(self.len());
        (self.subset(&order[..first]), self.subset(&order[first..]))
    }
}

impl<I, T> Dataset<I, T> {
    /// Shuffles the samples in place with `seed` (inputs and targets stay
    /// paired); the same seed gives the same order.
    pub fn shuffle(&mut self, seed: u64) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        // Apply the permutation by cycles, swapping in place.
        let mut done = vec![false; order.len()];
        for start in 0..order.len() {
            let mut i = start;
            while !done[i] {
                done[i] = true;
                let j = order[i];
                if !done[j] {
                    self.inputs.swap(i, j);
                    self.targets.swap(i, j);
                }
                i = j;
            }
        }
    }

    /// Shuffles with `seed`, then splits into training, validation and test
    /// sets: the first `round(train · len)` samples, the next
    /// `round(validation · len)`, and the rest.
    ///
    /// ```
    /// # use nn_runtime::Dataset;
    /// let d = Dataset::new((0..10).collect(), (0..10).collect::<Vec<u8>>());
    /// let (train, val, test) = d.split3(0.6, 0.2, 1);
    /// assert_eq!((train.len(), val.len(), test.len()), (6, 2, 2));
    /// ```
    ///
    /// # Panics
    /// If a fraction is negative or they add up to more than 1.
    pub fn split3(&self, train: f64, validation: f64, seed: u64) -> (Self, Self, Self)
    where
        I: Clone,
        T: Clone,
    {
        assert!(
            train >= 0.0 && validation >= 0.0 && train + validation <= 1.0 + 1e-12,
            "Dataset::split3: fractions {train} and {validation} must be non-negative and add up to at most 1"
        );
        let mut order: Vec<usize> = (0..self.len()).collect();
        Rng::new(seed).shuffle(&mut order);
        let n = self.len();
        let a = ((train * n as f64).round() as usize).min(n);
        let b = (a + (validation * n as f64).round() as usize).min(n);
        (
            self.subset(&order[..a]),
            self.subset(&order[a..b]),
            self.subset(&order[b..]),
        )
    }

    /// Consecutive mini-batches of `size` samples (the last may be smaller),
    /// as `(inputs, targets)` slices; shuffle first for random batches.
    ///
    /// # Panics
    /// If `size` is 0.
    pub fn batches(&self, size: usize) -> impl ExactSizeIterator<Item = (&[I], &[T])> + '_ {
        assert!(size > 0, "Dataset::batches: batch size 0");
        self.inputs.chunks(size).zip(self.targets.chunks(size))
    }
}

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

impl<I: Clone, F: Float, const C: usize> Dataset<I, [F; C]> {
    /// One-hot (or probability) targets back to class indices: the index of
    /// each target's largest element (the first on ties).
    pub fn class_indices(&self) -> Dataset<I, usize> {
        let targets = self.targets.iter().map(|t| argmax(t)).collect();
        Dataset::new(self.inputs.clone(), targets)
    }
}

/// The index of the largest element (the first on ties; NaNs never win);
/// 0 for an empty slice.
pub fn argmax<F: Float>(values: &[F]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] || values[best].to_f64().is_nan() {
            best = i;
        }
    }
    best
}

impl<F: Float, const N: usize, T> Dataset<[F; N], T> {
    /// Multiplies every feature of every input by `factor` (e.g. `1.0 / 16.0`
    /// for pixel counts in `0..=16`).
    pub fn scale_features(&mut self, factor: F) {
        for x in self.inputs.iter_mut().flatten() {
            *x *= factor;
        }
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
/// source (file path) and, where there is one, the line and field.
#[derive(Debug)]
#[non_exhaustive]
pub enum DataError {
    /// The file could not be opened or read.
    Io {
        /// The file name or source name.
        source: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// Reading a line failed part-way through the file (e.g. a corrupt
    /// compressed stream).
    Read {
        /// The line being read.
        at: Location,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A line that is not valid UTF-8 text.
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
    /// No data rows.
    Empty {
        /// The file name or source name.
        source: String,
    },
    /// A row with a different number of fields than the header (if read)
    /// or else the first data row.
    FieldCount {
        /// Where.
        at: Location,
        /// Fields of the header or first data row.
        expected: usize,
        /// Fields of this row.
        found: usize,
    },
    /// A cell that is not a number.
    NotANumber {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The cell's text.
        cell: String,
    },
    /// A class label that is not a non-negative integer.
    LabelNotInteger {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The value read.
        value: f64,
    },
    /// A class label not below the number of classes.
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
    NoSuchColumn {
        /// The file name or source name.
        source: String,
        /// The 0-based column asked for.
        column: usize,
        /// Columns in the table.
        columns: usize,
    },
    /// A cell that parses as a number but is NaN or infinite.
    NotFinite {
        /// Where.
        at: Location,
        /// 1-based field number.
        field: usize,
        /// The cell's text.
        cell: String,
    },
    /// A header has no column of this name.
    NoSuchColumnName {
        /// The file name or source name.
        source: String,
        /// The name asked for.
        name: String,
        /// The header's names.
        columns: Vec<String>,
    },
    /// A class index not below the number of classes (one-hot conversion).
    ClassOutOfRange {
        /// 0-based sample index.
        sample: usize,
        /// The class index.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// The table's feature columns do not match the input size asked for.
    FeatureCount {
        /// The file name or source name.
        source: String,
        /// Features the input type holds (`N` of `[T; N]`).
        expected: usize,
        /// Feature columns in the table.
        found: usize,
    },
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataError::Io { source, error } => write!(f, "{source}: {error}"),
            DataError::Read { at, error } => write!(f, "{at}: {error}"),
            DataError::NotUtf8 {
                at,
                field,
                byte,
                column,
            } => write!(
                f,
                "{at}, field {field}: byte 0x{byte:02x} (byte {column} of the line) is not \
                 valid UTF-8; save the file as UTF-8 text"
            ),
            DataError::Empty { source } => write!(f, "{source}: no data rows"),
            DataError::FieldCount {
                at,
                expected,
                found,
            } => write!(f, "{at}: expected {expected} fields, found {found}"),
            DataError::NotANumber { at, field, cell } => {
                write!(f, "{at}, field {field}: `{}` is not a number", Shown(cell))
            }
            DataError::LabelNotInteger { at, field, value } => write!(
                f,
                "{at}, field {field}: class label `{value}` is not a non-negative integer"
            ),
            DataError::LabelOutOfRange {
                at,
                field,
                label,
                classes,
            } => write!(
                f,
                "{at}, field {field}: class label {label} is out of range for {classes} classes (0..{classes})"
            ),
            DataError::NotFinite { at, field, cell } => write!(
                f,
                "{at}, field {field}: `{}` is not a finite number",
                Shown(cell)
            ),
            DataError::NoSuchColumnName {
                source,
                name,
                columns,
            } => write!(
                f,
                "{source}: no column named `{name}`; the header has {}",
                columns
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            DataError::ClassOutOfRange {
                sample,
                label,
                classes,
            } => write!(
                f,
                "sample {sample}: class {label} is out of range for {classes} classes (0..{classes})"
            ),
            DataError::NoSuchColumn {
                source,
                column,
                columns,
            } => write!(
                f,
                "{source}: no column {column} (0-based); the table has {columns} columns"
            ),
            DataError::FeatureCount {
                source,
                expected,
                found,
            } => write!(
                f,
                "{source}: expected {expected} feature columns, found {found}"
            ),
        }
    }
}

impl std::error::Error for DataError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DataError::Io { error, .. } | DataError::Read { error, .. } => Some(error),
            _ => None,
        }
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
    delimiter: char,
    header: Option<String>,
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
                source: self.source.clone(),
                name: name.to_owned(),
                columns: names,
            })
    }

    /// The header's column names (empty without a header).
    pub fn column_names(&self) -> Vec<String> {
        match &self.header {
            None => Vec::new(),
            Some(h) => h
                .split(self.delimiter)
                .map(|c| unquote(c).to_owned())
                .collect(),
        }
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
                source: self.source.clone(),
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
                source: self.source.clone(),
                expected: n,
                found,
            });
        }
        Ok(())
    }
}

/// CSV reader options: numbers only, one record per line, UTF-8 text.
///
/// Cells are trimmed; a cell wrapped in double quotes is unwrapped; blank
/// lines are skipped; a byte order mark at the start of the file is
/// skipped. Quoted delimiters are not supported (numeric data has none).
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

    /// Splits fields at `delimiter` instead of `,`.
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
    pub fn read<R: Read>(&self, reader: R, source: &str) -> Result<Table, DataError> {
        let mut table = Table {
            source: source.to_owned(),
            delimiter: self.delimiter,
            header: None,
            columns: 0,
            values: Vec::new(),
            lines: Vec::new(),
        };
        let mut reader = BufReader::new(reader);
        let mut buf = Vec::new();
        let mut line_no = 0;
        let mut want_header = self.header;
        loop {
            buf.clear();
            let location = |line| Location {
                source: source.to_owned(),
                line,
            };
            let n = reader
                .read_until(b'\n', &mut buf)
                .map_err(|error| DataError::Read {
                    at: location(line_no + 1),
                    error,
                })?;
            if n == 0 {
                break;
            }
            line_no += 1;
            let bytes = match buf.strip_prefix(BOM) {
                Some(rest) if line_no == 1 => rest,
                _ => &buf[..],
            };
            let text = std::str::from_utf8(bytes).map_err(|e| {
                let valid = e.valid_up_to();
                // The bytes before the bad one are valid UTF-8.
                let before = std::str::from_utf8(&bytes[..valid]).unwrap_or("");
                DataError::NotUtf8 {
                    at: location(line_no),
                    field: before.matches(self.delimiter).count() + 1,
                    byte: bytes[valid],
                    column: valid + 1,
                }
            })?;
            let line = text.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                continue;
            }
            if want_header {
                want_header = false;
                table.header = Some(line.to_owned());
                table.columns = line.split(self.delimiter).count();
                continue;
            }
            let at = || Location {
                source: source.to_owned(),
                line: line_no,
            };
            let before = table.values.len();
            for (i, cell) in line.split(self.delimiter).enumerate() {
                let value: f64 = unquote(cell).parse().map_err(|_| DataError::NotANumber {
                    at: at(),
                    field: i + 1,
                    cell: cell.to_owned(),
                })?;
                if !value.is_finite() {
                    return Err(DataError::NotFinite {
                        at: at(),
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
                    at: at(),
                    expected: table.columns,
                    found,
                });
            }
            table.lines.push(line_no);
        }
        if table.lines.is_empty() {
            return Err(DataError::Empty {
                source: source.to_owned(),
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
            source: source.clone(),
            error,
        })?;
        self.read(file, &source)
    }
}

/// A cell trimmed, and unwrapped from double quotes.
fn unquote(cell: &str) -> &str {
    let text = cell.trim();
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
        .trim()
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

/// A per-feature affine rescaling `x' = (x - offset) · scale`, fitted on
/// one data set (the training set) and applied to others and to new inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Scaler<const N: usize> {
    /// Subtracted from each feature.
    pub offset: [f64; N],
    /// Then multiplied into each feature.
    pub scale: [f64; N],
}

impl<const N: usize> Scaler<N> {
    /// Maps each feature's range in `data` to `[0, 1]`; a constant feature
    /// maps to `0`.
    pub fn min_max<F: Float, T>(data: &Dataset<[F; N], T>) -> Self {
        let mut lo = [f64::INFINITY; N];
        let mut hi = [f64::NEG_INFINITY; N];
        for x in &data.inputs {
            for ((l, h), v) in lo.iter_mut().zip(&mut hi).zip(x) {
                *l = l.min(v.to_f64());
                *h = h.max(v.to_f64());
            }
        }
        let mut s = Scaler {
            offset: [0.0; N],
            scale: [1.0; N],
        };
        for i in 0..N {
            if lo[i].is_finite() {
                s.offset[i] = lo[i];
            }
            if hi[i] > lo[i] {
                s.scale[i] = 1.0 / (hi[i] - lo[i]);
            }
        }
        s
    }

    /// Gives each feature mean 0 and standard deviation 1 over `data`; a
    /// constant feature is only centred.
    pub fn standardize<F: Float, T>(data: &Dataset<[F; N], T>) -> Self {
        let n = data.len().max(1) as f64;
        let mut mean = [0.0; N];
        for x in &data.inputs {
            for (m, v) in mean.iter_mut().zip(x) {
                *m += v.to_f64() / n;
            }
        }
        let mut var = [0.0; N];
        for x in &data.inputs {
            for ((s, m), v) in var.iter_mut().zip(&mean).zip(x) {
                *s += (v.to_f64() - m).powi(2) / n;
            }
        }
        let mut scale = [1.0; N];
        for (s, v) in scale.iter_mut().zip(var) {
            if v > 0.0 {
                *s = 1.0 / v.sqrt();
            }
        }
        Scaler {
            offset: mean,
            scale,
        }
    }

    /// Rescales one input in place.
    pub fn transform<F: Float>(&self, x: &mut [F; N]) {
        for ((v, o), s) in x.iter_mut().zip(&self.offset).zip(&self.scale) {
            *v = F::from_f64((v.to_f64() - o) * s);
        }
    }

    /// Rescales every input of `data` in place.
    pub fn apply<F: Float, T>(&self, data: &mut Dataset<[F; N], T>) {
        for x in &mut data.inputs {
            self.transform(x);
        }
    }
}

#[cfg(test)]
mod tests {
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
        // Non-numeric cells anywhere, quoted or not, and non-finite numbers.
        assert_eq!(
            err("1,2\n3,\"four\"\n"),
            "digits.csv line 2, field 2: `\"four\"` is not a number"
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
    fn shuffle_split3_and_batches() {
        let d = Dataset::new(
            (0..10).collect::<Vec<u32>>(),
            (0..10).map(|i| i * 10).collect(),
        );
        let mut s = d.clone();
        s.shuffle(3);
        let mut s2 = d.clone();
        s2.shuffle(3);
        assert_eq!(s, s2);
        assert_ne!(s, d);
        for (x, y) in s.iter() {
            assert_eq!(*y, x * 10);
        }
        let mut sorted = s.inputs.clone();
        sorted.sort();
        assert_eq!(sorted, d.inputs);

        let (a, b, c) = d.split3(0.7, 0.2, 5);
        assert_eq!((a.len(), b.len(), c.len()), (7, 2, 1));
        let mut all: Vec<u32> = a
            .inputs
            .iter()
            .chain(&b.inputs)
            .chain(&c.inputs)
            .copied()
            .collect();
        all.sort();
        assert_eq!(all, d.inputs);
        assert_eq!(d.split3(0.7, 0.2, 5), (a, b, c));

        let sizes: Vec<usize> = d
            .batches(4)
            .map(|(x, y)| {
                assert_eq!(x.len(), y.len());
                x.len()
            })
            .collect();
        assert_eq!(sizes, [4, 4, 2]);
        assert_eq!(d.batches(4).nth(1).unwrap().0, [4, 5, 6, 7]);
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

    #[test]
    fn split_is_seeded_and_a_partition() {
        let d = Dataset::new(
            (0..10).collect::<Vec<u32>>(),
            (0..10).map(|i| i * 10).collect(),
        );
        let (a, b) = d.split(0.8, 7);
        let (a2, b2) = d.split(0.8, 7);
        assert_eq!((&a, &b), (&a2, &b2));
        assert_eq!((a.len(), b.len()), (8, 2));
        let (a3, _) = d.split(0.8, 8);
        assert_ne!(a, a3);
        // Pairs stay together; every sample lands in exactly one part.
        let mut all: Vec<u32> = a.inputs.iter().chain(&b.inputs).copied().collect();
        for (x, y) in a.iter().chain(b.iter()) {
            assert_eq!(*y, x * 10);
        }
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(d.split(1.0, 1).1.len(), 0);
        assert_eq!(d.split(0.0, 1).0.len(), 0);
    }

    #[test]
    fn dataset_basics() {
        let d = Dataset::from_slices(&[[0.0f32, 1.0], [2.0, 3.0]], &[1usize, 0]);
        assert_eq!(d.len(), 2);
        assert!(!d.is_empty());
        assert_eq!(d.get(1), Some((&[2.0, 3.0], &0)));
        assert_eq!(d.get(2), None);
        let mut d = d;
        d.scale_features(0.5);
        assert_eq!(d.inputs, [[0.0, 0.5], [1.0, 1.5]]);
    }

    #[test]
    #[should_panic(expected = "2 inputs but 1 targets")]
    fn new_rejects_unequal_lengths() {
        Dataset::new(vec![1, 2], vec![3]);
    }

    #[test]
    fn scalers_fit_on_one_set_and_apply_to_another() {
        let mut d = Dataset::new(vec![[0.0f64, 5.0], [10.0, 5.0], [5.0, 5.0]], vec![0, 1, 2]);
        let mm = Scaler::min_max(&d);
        let mut x = [20.0, 7.0];
        mm.transform(&mut x);
        assert_eq!(x, [2.0, 2.0]);
        let st = Scaler::standardize(&d);
        st.apply(&mut d);
        let mean: f64 = d.inputs.iter().map(|x| x[0]).sum::<f64>() / 3.0;
        let var: f64 = d.inputs.iter().map(|x| x[0] * x[0]).sum::<f64>() / 3.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-12);
        assert!(d.inputs.iter().all(|x| x[1] == 0.0));
    }
}
