//! Tabular input files of the offline commands (`profile`, `compare`): CSV with a header, JSON
//! lines, Avro object container files and Parquet. Input *records* (predictions, labels) for
//! `backtest` are read by [`records`].
//!
//! Each reader streams the file into a [`Sink`] cell by cell, typed the way the join stage
//! types a prediction's features: a number, a string (a category), or missing. Nothing is kept
//! per row, so memory stays flat whatever the file's size.
//!
//! Typing per format:
//! - CSV has no types: an empty cell is missing; a cell that parses as a number (`1`, `-2.5e3`,
//!   `NaN`, `inf`) is a number (non-finite numbers then count as missing, as in the monitor);
//!   anything else is a category. Cells and names are trimmed of spaces and tabs.
//! - JSON lines: numbers, strings and `null` as the monitor reads them; `true`/`false` as the
//!   categories `"true"`/`"false"`; arrays and objects are nested cells, left out. An absent
//!   key is not counted at all (as an absent feature in a prediction).
//! - Avro: int, long, float, double are numbers; string, enum and boolean categories; null
//!   (also as a union branch) missing; anything else nested.
//! - Parquet: flat columns only (nested and repeated ones are not offered); integers and
//!   floats are numbers (decimals scaled), strings and booleans categories, nulls missing.
//!
//! Errors name the file, the line (CSV, JSON lines), record (Avro) or row group (Parquet), and
//! the column when one is concerned.

mod avro;
mod csv;
mod jsonl;
mod parquet;
pub mod records;
pub mod topic;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

/// Input formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Csv,
    Jsonl,
    Avro,
    Parquet,
}

impl InputFormat {
    /// The format its extension names (`.csv`, `.jsonl`/`.ndjson`/`.json`, `.avro`,
    /// `.parquet`/`.pq`).
    pub fn of_path(path: &Path) -> Option<InputFormat> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => InputFormat::Csv,
            "jsonl" | "ndjson" | "json" => InputFormat::Jsonl,
            "avro" => InputFormat::Avro,
            "parquet" | "pq" => InputFormat::Parquet,
            _ => return None,
        })
    }

    /// What a position in this format counts.
    pub fn unit(self) -> &'static str {
        match self {
            InputFormat::Csv | InputFormat::Jsonl => "line",
            InputFormat::Avro => "record",
            InputFormat::Parquet => "row",
        }
    }
}

/// One cell of a row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    Category(&'a str),
    /// An array, map or record: not a feature value.
    Nested,
}

/// Receives the cells of a file.
pub trait Sink {
    /// The slot of a column the sink keeps, `None` to skip it. Called once per column before
    /// its first cell (for CSV, Avro and Parquet before any row).
    fn column(&mut self, name: &str) -> Result<Option<usize>, String>;
    /// One cell of a kept column. `at` is the 1-based line (CSV, JSON lines), record (Avro) or
    /// row (Parquet) it comes from.
    fn cell(&mut self, slot: usize, cell: Cell<'_>, at: u64);
    /// `n` more rows were read.
    fn rows(&mut self, n: u64);
}

/// A file that could not be read, and where.
#[derive(Debug)]
pub struct InputError {
    pub file: PathBuf,
    /// What and which: ("line", 12), ("record", 3), ("row group", 0).
    pub at: Option<(&'static str, u64)>,
    pub column: Option<String>,
    pub message: String,
}

impl InputError {
    pub(crate) fn new(file: &Path, message: impl Into<String>) -> Self {
        InputError {
            file: file.to_owned(),
            at: None,
            column: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, unit: &'static str, n: u64) -> Self {
        self.at = Some((unit, n));
        self
    }

    pub(crate) fn column(mut self, name: impl Into<String>) -> Self {
        self.column = Some(name.into());
        self
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        match (&self.at, &self.column) {
            (Some((unit, n)), Some(c)) => write!(f, ": {unit} {n}, column `{c}`")?,
            (Some((unit, n)), None) => write!(f, ": {unit} {n}")?,
            (None, Some(c)) => write!(f, ": column `{c}`")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// Counts bytes read, for the progress bar.
struct Counting<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// A progress bar on stderr for a file of `len` bytes, only on a terminal and only when the
/// file is big enough to wait for.
fn progress_bar(len: u64) -> ProgressBar {
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) && len > 8 << 20 {
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} ({eta})") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    }
}

/// Streams `path` into `sink`. `progress` shows a bar on a terminal for large files.
pub fn read<S: Sink>(
    path: &Path,
    format: InputFormat,
    sink: &mut S,
    progress: bool,
) -> Result<(), InputError> {
    let file = File::open(path).map_err(|e| InputError::new(path, format!("cannot open: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len == 0 {
        return Err(InputError::new(path, "the file is empty"));
    }
    let bar = if progress {
        progress_bar(len)
    } else {
        ProgressBar::hidden()
    };
    let input = Counting {
        inner: file,
        bar: bar.clone(),
    };
    let result = match format {
        InputFormat::Csv => csv::read(input, path, sink),
        InputFormat::Jsonl => jsonl::read(input, path, sink),
        InputFormat::Avro => avro::read(input, path, sink),
        // Parquet reads its footer first: it needs the file itself, not a stream.
        InputFormat::Parquet => parquet::read(input.inner, path, sink),
    };
    bar.finish_and_clear();
    result
}

/// A number in `raw` (already trimmed), without allocating: what CSV cells are tried as.
#[inline]
pub(crate) fn parse_number(raw: &[u8]) -> Option<f64> {
    // Most categories fail on their first byte, before any UTF-8 check or float parse.
    match raw.first()? {
        b'0'..=b'9' | b'-' | b'+' | b'.' | b'i' | b'I' | b'n' | b'N' => {}
        _ => return None,
    }
    // Straight from the bytes: a number is ASCII, so no UTF-8 check is needed.
    fast_float2::parse::<f64, _>(raw).ok()
}

/// `raw` without leading and trailing spaces and tabs.
#[inline]
pub(crate) fn trim(raw: &[u8]) -> &[u8] {
    let start = raw
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    &raw[start..end.max(start)]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// Collects every cell as text, for the readers' tests.
    #[derive(Default)]
    pub(crate) struct Collect {
        pub names: Vec<String>,
        pub skip: Vec<String>,
        pub cells: Vec<(String, String, u64)>,
        pub rows: u64,
    }

    impl Sink for Collect {
        fn column(&mut self, name: &str) -> Result<Option<usize>, String> {
            if self.skip.iter().any(|s| s == name) {
                return Ok(None);
            }
            self.names.push(name.to_owned());
            Ok(Some(self.names.len() - 1))
        }
        fn cell(&mut self, slot: usize, cell: Cell<'_>, at: u64) {
            let text = match cell {
                Cell::Missing => "∅".to_owned(),
                Cell::Number(x) => format!("{x}"),
                Cell::Category(c) => format!("'{c}'"),
                Cell::Nested => "nested".to_owned(),
            };
            self.cells.push((self.names[slot].clone(), text, at));
        }
        fn rows(&mut self, n: u64) {
            self.rows += n;
        }
    }

    #[test]
    fn numbers_and_trimming() {
        assert_eq!(parse_number(b"1.5"), Some(1.5));
        assert_eq!(parse_number(b"-2e3"), Some(-2000.0));
        assert!(parse_number(b"NaN").unwrap().is_nan());
        assert_eq!(parse_number(b"red"), None);
        assert_eq!(parse_number(b"1.2.3"), None);
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"+.5"), Some(0.5));
        assert_eq!(parse_number(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_number(b"12abc"), None);
        assert_eq!(parse_number(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(trim(b"  a b\t"), b"a b");
        assert_eq!(trim(b"   "), b"");
        assert_eq!(trim(b""), b"");
    }

    #[test]
    fn formats_from_extensions_and_error_text() {
        assert_eq!(
            InputFormat::of_path(Path::new("a/b.PARQUET")),
            Some(InputFormat::Parquet)
        );
        assert_eq!(
            InputFormat::of_path(Path::new("x.ndjson")),
            Some(InputFormat::Jsonl)
        );
        assert_eq!(InputFormat::of_path(Path::new("x.txt")), None);
        let e = InputError::new(Path::new("f.csv"), "bad")
            .at("line", 3)
            .column("x");
        assert_eq!(e.to_string(), "f.csv: line 3, column `x`: bad");
    }
}
