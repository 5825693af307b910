//! `driftwatch compare`: data drift between two files, offline, judged as the monitor judges it.
//!
//! Each file is summarized column by column into the same [`FeatureSummary`] the join stage
//! builds from live predictions (distinct-value samples for numbers, frequent items for categories),
//! both files at once on two threads, streaming. Each column then goes through the monitor's
//! own [`drift::default_test`] (Evidently's defaults), so an offline verdict and a live one
//! never disagree on method or threshold.
//!
//! - A column's kind is the reference's majority kind, as in the monitor: a numerical column
//!   with a few text values (or the reverse) is compared on its values of the majority kind,
//!   and the others are reported as a data-quality note on stderr, not an error. A column
//!   whose current side holds no value of the reference's kind at all is an error.
//! - Dataset drift: at least [`DATASET_DRIFT_SHARE`] (50 %) of the compared columns drifted,
//!   Evidently's default `drift_share`.
//! - Errors (exit code 1) name the file, the line / record / row and the column: a file that
//!   cannot be read or parsed, an empty file, a column present on one side only (or named by
//!   `--columns` but absent), a column without any value.

mod html;
mod report;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use driftwatch_core::monitor::FeatureDriftConfig;
use driftwatch_core::summary::drift::{self, DriftError};
use driftwatch_core::summary::{FeatureKind, FeatureSummary};

use crate::input::{self, Cell, InputFormat, Sink};

use report::{ColumnReport, Kind, Report};

/// Report formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table.
    Table,
    /// `{"features":[...],"share_drifted":..,"dataset_drift":..}`.
    Json,
    /// One self-contained HTML page with the table and a chart per column.
    Html,
}

/// Arguments of `driftwatch compare`.
#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// The reference data (e.g. training data): .csv (with a header), .jsonl / .ndjson,
    /// .avro (object container file) or .parquet.
    #[arg(long)]
    pub reference: PathBuf,
    /// The current data (e.g. last week's inputs), in any of the same formats.
    #[arg(long)]
    pub current: PathBuf,
    /// Compare only these columns (comma-separated). Default: every column; then both files
    /// must have the same columns.
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Write the report to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// The columns of one file, summarized.
struct Side {
    path: PathBuf,
    format: InputFormat,
    /// Only these columns, when given.
    wanted: Option<HashSet<String>>,
    /// By slot.
    names: Vec<String>,
    features: Vec<FeatureSummary>,
    /// By slot: where the first number / category / nested value was (0: none).
    first_number: Vec<u64>,
    first_category: Vec<u64>,
    nested: Vec<u64>,
    rows: u64,
}

impl Side {
    fn new(path: &Path, wanted: &[String]) -> anyhow::Result<Side> {
        let format = InputFormat::of_path(path).ok_or_else(|| {
            anyhow!(
                "{}: cannot tell the format from the extension: use .csv, .jsonl, .ndjson, \
                 .avro or .parquet",
                path.display()
            )
        })?;
        Ok(Side {
            path: path.to_owned(),
            format,
            wanted: (!wanted.is_empty()).then(|| wanted.iter().cloned().collect()),
            names: Vec::new(),
            features: Vec::new(),
            first_number: Vec::new(),
            first_category: Vec::new(),
            nested: Vec::new(),
            rows: 0,
        })
    }

    fn slot_of(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    fn read(mut self) -> anyhow::Result<Side> {
        let (path, format) = (self.path.clone(), self.format);
        input::read(&path, format, &mut self, false)?;
        if self.rows == 0 {
            bail!("{}: no rows", path.display());
        }
        for f in &mut self.features {
            f.flush();
        }
        Ok(self)
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }
}

impl Sink for Side {
    fn column(&mut self, name: &str) -> Result<Option<usize>, String> {
        if self.wanted.as_ref().is_some_and(|w| !w.contains(name)) {
            return Ok(None);
        }
        self.names.push(name.to_owned());
        self.features.push(FeatureSummary::default());
        self.first_number.push(0);
        self.first_category.push(0);
        self.nested.push(0);
        Ok(Some(self.names.len() - 1))
    }

    #[inline]
    fn cell(&mut self, slot: usize, cell: Cell<'_>, at: u64) {
        let Some(f) = self.features.get_mut(slot) else {
            return;
        };
        match cell {
            Cell::Missing => f.update_missing(),
            Cell::Number(x) => {
                f.update_number(x);
                if let Some(first @ 0) = self.first_number.get_mut(slot) {
                    *first = at;
                }
            }
            Cell::Category(c) => {
                f.update_category(c);
                if let Some(first @ 0) = self.first_category.get_mut(slot) {
                    *first = at;
                }
            }
            Cell::Nested => {
                if let Some(n) = self.nested.get_mut(slot) {
                    *n += 1;
                }
            }
        }
    }

    fn rows(&mut self, n: u64) {
        self.rows += n;
    }
}

/// Reads both files, one thread each.
fn read_both(args: &CompareArgs) -> anyhow::Result<(Side, Side)> {
    let reference = Side::new(&args.reference, &args.columns)?;
    let current = Side::new(&args.current, &args.columns)?;
    std::thread::scope(|s| {
        let r = s.spawn(move || reference.read());
        let c = current.read();
        let r = r
            .join()
            .map_err(|_| anyhow!("{}: the reader failed", args.reference.display()))?;
        Ok((r?, c?))
    })
}

/// The columns to compare, in order, or which one is missing where.
fn columns(args: &CompareArgs, r: &Side, c: &Side) -> anyhow::Result<Vec<String>> {
    let listing = |s: &Side| s.names.join(", ");
    if !args.columns.is_empty() {
        for name in &args.columns {
            for side in [r, c] {
                if side.slot_of(name).is_none() {
                    bail!(
                        "{}: column `{name}` (named by --columns) is not in the file",
                        side.display()
                    );
                }
            }
        }
        let mut seen = HashSet::new();
        return Ok(args
            .columns
            .iter()
            .filter(|n| seen.insert(n.as_str()))
            .cloned()
            .collect());
    }
    for (have, lack) in [(r, c), (c, r)] {
        if let Some(name) = have.names.iter().find(|n| lack.slot_of(n).is_none()) {
            bail!(
                "{}: column `{name}` is not in the file, but {} has it (columns: {}); pass \
                 --columns to compare a subset",
                lack.display(),
                have.display(),
                listing(lack)
            );
        }
    }
    Ok(r.names.clone())
}

fn kind_name(kind: FeatureKind) -> &'static str {
    match kind {
        FeatureKind::Categorical => "categorical",
        _ => "numerical",
    }
}

/// Values of `side`'s column of the other kind than `kind`, as a note for stderr.
fn mismatch_note(side: &Side, slot: usize, name: &str, kind: FeatureKind) -> Option<String> {
    let f = side.features.get(slot)?;
    let numbers = f.numeric().map_or(0, |n| n.count() + n.missing());
    let texts = f.categorical().map_or(0, |c| c.count());
    let (others, first, what) = match kind {
        FeatureKind::Categorical => (numbers, side.first_number.get(slot)?, "numbers"),
        _ => (texts, side.first_category.get(slot)?, "text values"),
    };
    (others > 0).then(|| {
        format!(
            "note: {}: column `{name}` is {} and holds {others} {what} of {} values (the \
             first at {} {first}): compared on its {} values, as the monitor does",
            side.display(),
            kind_name(kind),
            numbers + texts,
            side.format.unit(),
            kind_name(kind),
        )
    })
}

/// One column through the monitor's test.
fn compare_column(
    name: &str,
    r: &Side,
    c: &Side,
    notes: &mut Vec<String>,
) -> anyhow::Result<ColumnReport> {
    let (rs, cs) = (
        r.slot_of(name).context("column lookup")?,
        c.slot_of(name).context("column lookup")?,
    );
    let (rf, cf) = (
        r.features.get(rs).context("column lookup")?,
        c.features.get(cs).context("column lookup")?,
    );
    for (side, f, slot) in [(r, rf, rs), (c, cf, cs)] {
        if f.count() == 0 {
            let nested = side.nested.get(slot).copied().unwrap_or(0);
            let why = if nested > 0 {
                format!("only nested values (arrays, objects, records: {nested})")
            } else {
                "every cell is empty or null".to_owned()
            };
            bail!(
                "{}: column `{name}` has no value in {} rows: {why}",
                side.display(),
                side.rows
            );
        }
    }
    let kind = rf.kind();
    // The monitor abstains below `min_samples` values a side; offline the test still runs
    // (the user asked for it), with a word of caution.
    let min = FeatureDriftConfig::default().min_samples;
    for (side, f) in [(r, rf), (c, cf)] {
        if f.count() < min {
            notes.push(format!(
                "note: {}: column `{name}` has {} values, fewer than the monitor's min_samples \
                 ({min}): the monitor would not judge it yet",
                side.display(),
                f.count()
            ));
        }
    }
    for (side, slot) in [(r, rs), (c, cs)] {
        notes.extend(mismatch_note(side, slot, name, kind));
        let nested = side.nested.get(slot).copied().unwrap_or(0);
        if nested > 0 {
            notes.push(format!(
                "note: {}: column `{name}`: {nested} nested values (arrays, objects, records) \
                 left out",
                side.display()
            ));
        }
    }
    let result = match drift::default_test(rf, cf) {
        Ok(result) => result,
        Err(DriftError::EmptyCurrent) => {
            let (first, what) = match kind {
                FeatureKind::Categorical => (c.first_number.get(cs), "a number"),
                _ => (c.first_category.get(cs), "text"),
            };
            bail!(
                "{}: {} {}, column `{name}`: {what}, and no value of the column's kind: it is {} \
                 in {}",
                c.display(),
                c.format.unit(),
                first.copied().unwrap_or(0),
                kind_name(kind),
                r.display()
            );
        }
        Err(e) => bail!("column `{name}`: {e}"),
    };
    Ok(ColumnReport {
        name: name.to_owned(),
        kind: match kind {
            FeatureKind::Categorical => Kind::Categorical,
            _ => Kind::Numerical,
        },
        result,
        reference: rf.clone(),
        current: cf.clone(),
    })
}

/// Reads, compares and builds the report; notes (data-quality findings) go to `notes`.
pub fn compare(args: &CompareArgs, notes: &mut Vec<String>) -> anyhow::Result<Report> {
    let (r, c) = read_both(args)?;
    let names = columns(args, &r, &c)?;
    if names.is_empty() {
        bail!("{}: no columns to compare", r.display());
    }
    let mut out = Vec::with_capacity(names.len());
    for name in &names {
        out.push(compare_column(name, &r, &c, notes)?);
    }
    Ok(Report::new(
        (r.display(), r.rows),
        (c.display(), c.rows),
        out,
    ))
}

/// `driftwatch compare`.
pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    let mut notes = Vec::new();
    let report = compare(args, &mut notes)?;
    for n in &notes {
        eprintln!("{n}");
    }
    let text = match args.format {
        OutputFormat::Table => report.table(),
        OutputFormat::Json => report.json()?,
        OutputFormat::Html => html::page(&report),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .context("writing the report to stdout")?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A CSV-like side with one column `x` fed `cells` (line numbers from 2).
    fn side(name: &str, cells: &[Cell<'_>]) -> Side {
        let mut s = Side::new(Path::new(name), &[]).unwrap();
        let slot = s.column("x").unwrap().unwrap();
        for (i, c) in cells.iter().enumerate() {
            s.cell(slot, *c, i as u64 + 2);
        }
        s.rows(cells.len() as u64);
        for f in &mut s.features {
            f.flush();
        }
        s
    }

    fn numbers(n: usize, shift: f64) -> Vec<Cell<'static>> {
        (0..n)
            .map(|i| Cell::Number((i % 100) as f64 + shift))
            .collect()
    }

    #[test]
    fn a_column_goes_through_the_monitors_test() {
        let (r, c) = (
            side("r.csv", &numbers(2000, 0.0)),
            side("c.csv", &numbers(2000, 30.0)),
        );
        let mut notes = Vec::new();
        let col = compare_column("x", &r, &c, &mut notes).unwrap();
        let expected = drift::default_test(&r.features[0], &c.features[0]).unwrap();
        assert_eq!(col.result.method, expected.method);
        assert!(col.result.drifted);
        assert_eq!(col.kind, Kind::Numerical);
        assert!(notes.is_empty());
    }

    #[test]
    fn text_in_a_numeric_column_is_a_note_unless_nothing_else_is_left() {
        let r = side("r.csv", &numbers(500, 0.0));
        let mut dirty = numbers(500, 0.0);
        dirty.push(Cell::Number(1.0));
        dirty[7] = Cell::Category("oops");
        let c = side("c.csv", &dirty);
        let mut notes = Vec::new();
        compare_column("x", &r, &c, &mut notes).unwrap();
        assert_eq!(notes.len(), 1);
        assert!(
            notes[0].contains("c.csv: column `x` is numerical and holds 1 text values of 501")
                && notes[0].contains("line 9"),
            "{notes:?}"
        );
        let all_text = side("t.csv", &[Cell::Category("a"), Cell::Category("b")]);
        let e = compare_column("x", &r, &all_text, &mut notes)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.csv: line 2, column `x`: text"), "{e}");
        let empty = side("e.csv", &[Cell::Missing, Cell::Nested]);
        let e = compare_column("x", &r, &empty, &mut notes)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("e.csv: column `x` has no value in 2 rows"),
            "{e}"
        );
    }

    #[test]
    fn small_samples_are_tested_with_a_note() {
        let (r, c) = (
            side("r.csv", &numbers(50, 0.0)),
            side("c.csv", &numbers(2000, 0.0)),
        );
        let mut notes = Vec::new();
        compare_column("x", &r, &c, &mut notes).unwrap();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains(
            "r.csv: column `x` has 50 values, fewer than the monitor's min_samples (200)"
        ));
    }

    #[test]
    fn columns_must_match_unless_named() {
        let mut r = side("r.csv", &[]);
        r.column("y").unwrap();
        let c = side("c.csv", &[]);
        let mut args = CompareArgs {
            reference: "r.csv".into(),
            current: "c.csv".into(),
            columns: vec![],
            format: OutputFormat::Json,
            output: None,
        };
        let e = columns(&args, &r, &c).unwrap_err().to_string();
        assert!(e.starts_with("c.csv: column `y` is not in the file"), "{e}");
        args.columns = vec!["x".into(), "x".into()];
        assert_eq!(columns(&args, &r, &c).unwrap(), ["x"]);
        args.columns = vec!["y".into()];
        let e = columns(&args, &r, &c).unwrap_err().to_string();
        assert!(e.contains("c.csv: column `y` (named by --columns)"), "{e}");
    }
}
