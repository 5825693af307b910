//! `driftwatch profile`: a reference profile of a model version from its training data.
//!
//! Reads training rows (CSV with a header, JSON lines, or an Avro object container file),
//! summarizes every column with the same mergeable summaries the join stage builds from live
//! predictions (DataSketches KLL / frequent items / HLL), and publishes the result to the
//! compacted `model-references` topic keyed by `model_id/model_version` — or writes it to a
//! file. The monitor compares live traffic with it instead of with the first hour of traffic.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use driftwatch_codec::{to_avro, to_json};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::ModelReference;
use driftwatch_worker::clients::producer_config;
use driftwatch_worker::settings::Settings;
use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Input formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    Csv,
    Jsonl,
    Avro,
}

/// Arguments of `driftwatch profile`.
#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Model id the profile is for.
    #[arg(long)]
    pub model: String,
    /// Model version the profile is for.
    #[arg(long)]
    pub version: String,
    /// Training rows: .csv (with a header), .jsonl / .ndjson, or .avro (object container file).
    #[arg(long)]
    pub input: PathBuf,
    /// Format, when the file extension does not tell.
    #[arg(long, value_enum)]
    pub format: Option<InputFormat>,
    /// Column holding the training label (summarized as the model's output, for prediction
    /// drift); every other column is a feature.
    #[arg(long)]
    pub label_column: Option<String>,
    /// Columns to leave out (ids, timestamps, free text).
    #[arg(long = "ignore", value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Write the reference as JSON to this file instead of publishing it.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// One cell of a training row.
enum Cell<'a> {
    Missing,
    Number(f64),
    Category(&'a str),
}

struct Profiler {
    interner: FeatureInterner,
    summary: SignatureSummary,
    label_column: Option<String>,
    ignore: Vec<String>,
    rows: u64,
    skipped_cells: u64,
}

impl Profiler {
    fn cell(&mut self, column: &str, cell: Cell<'_>) -> anyhow::Result<()> {
        if self.ignore.iter().any(|c| c == column) {
            return Ok(());
        }
        if self.label_column.as_deref() == Some(column) {
            match cell {
                Cell::Missing => {}
                Cell::Number(v) => self.summary.update_output(None, Some(v), None),
                Cell::Category(l) => self.summary.update_output(Some(l), None, None),
            }
            return Ok(());
        }
        let id = self
            .interner
            .intern(column)
            .with_context(|| format!("column `{column}`"))?;
        match cell {
            Cell::Missing => self.summary.update_missing(id),
            Cell::Number(v) => self.summary.update_number(id, v),
            Cell::Category(c) => self.summary.update_category(id, c),
        }
        Ok(())
    }
}

fn format_of(args: &ProfileArgs) -> anyhow::Result<InputFormat> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    let ext = args
        .input
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "csv" => InputFormat::Csv,
        "jsonl" | "ndjson" | "json" => InputFormat::Jsonl,
        "avro" => InputFormat::Avro,
        _ => bail!(
            "cannot tell the format of {} from its extension: pass --format csv|jsonl|avro",
            args.input.display()
        ),
    })
}

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

fn open(path: &Path) -> anyhow::Result<Counting<File>> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    // A bar only on a terminal, and only when the file is big enough to wait for.
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && len > 8 << 20 {
        let bar = ProgressBar::new(len);
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} ({eta})") {
            bar.set_style(style);
        }
        bar
    } else {
        ProgressBar::hidden()
    };
    Ok(Counting { inner: file, bar })
}

fn read_csv(p: &mut Profiler, input: impl Read) -> anyhow::Result<()> {
    let mut lines = BufReader::new(input).lines();
    let header = match lines.next() {
        Some(h) => h.context("reading the header")?,
        None => bail!("the CSV file is empty: it needs a header line"),
    };
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_string()).collect();
    for (n, line) in lines.enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 2))?;
        if line.trim().is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.len() != columns.len() {
            bail!(
                "line {}: {} cells, the header has {} columns (quoted commas are not supported)",
                n + 2,
                cells.len(),
                columns.len()
            );
        }
        for (column, raw) in columns.iter().zip(cells) {
            let raw = raw.trim();
            let cell = if raw.is_empty() {
                Cell::Missing
            } else if let Ok(v) = raw.parse::<f64>() {
                Cell::Number(v)
            } else {
                Cell::Category(raw)
            };
            p.cell(column, cell)?;
        }
        p.rows += 1;
    }
    Ok(())
}

fn read_jsonl(p: &mut Profiler, input: impl Read) -> anyhow::Result<()> {
    for (n, line) in BufReader::new(input).lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&line)
            .with_context(|| format!("line {}: not a JSON object", n + 1))?;
        for (column, v) in &row {
            let text;
            let cell = match v {
                serde_json::Value::Null => Cell::Missing,
                serde_json::Value::Number(x) => x.as_f64().map_or(Cell::Missing, Cell::Number),
                serde_json::Value::String(s) => Cell::Category(s),
                serde_json::Value::Bool(b) => {
                    text = b.to_string();
                    Cell::Category(&text)
                }
                _ => {
                    p.skipped_cells += 1;
                    continue;
                }
            };
            p.cell(column, cell)?;
        }
        p.rows += 1;
    }
    Ok(())
}

fn read_avro(p: &mut Profiler, input: impl Read) -> anyhow::Result<()> {
    use apache_avro::types::Value;
    let reader = apache_avro::Reader::new(input).context("not an Avro object container file")?;
    for (n, record) in reader.enumerate() {
        let record = record.with_context(|| format!("record {}", n + 1))?;
        let Value::Record(fields) = record else {
            bail!("record {}: the file's schema is not a record", n + 1);
        };
        for (column, v) in &fields {
            let v = match v {
                Value::Union(_, inner) => inner.as_ref(),
                other => other,
            };
            let cell = match v {
                Value::Null => Cell::Missing,
                Value::Int(x) => Cell::Number(f64::from(*x)),
                Value::Long(x) => Cell::Number(*x as f64),
                Value::Float(x) => Cell::Number(f64::from(*x)),
                Value::Double(x) => Cell::Number(*x),
                Value::String(s) | Value::Enum(_, s) => Cell::Category(s),
                Value::Boolean(b) => Cell::Category(if *b { "true" } else { "false" }),
                _ => {
                    p.skipped_cells += 1;
                    continue;
                }
            };
            p.cell(column, cell)?;
        }
        p.rows += 1;
    }
    Ok(())
}

/// Builds the reference from the input file.
pub fn build(args: &ProfileArgs) -> anyhow::Result<ModelReference> {
    let format = format_of(args)?;
    let mut p = Profiler {
        interner: FeatureInterner::new(),
        summary: SignatureSummary::default(),
        label_column: args.label_column.clone(),
        ignore: args.ignore.clone(),
        rows: 0,
        skipped_cells: 0,
    };
    let input = open(&args.input)?;
    let bar = input.bar.clone();
    match format {
        InputFormat::Csv => read_csv(&mut p, input)?,
        InputFormat::Jsonl => read_jsonl(&mut p, input)?,
        InputFormat::Avro => read_avro(&mut p, input)?,
    }
    bar.finish_and_clear();
    if p.rows == 0 {
        bail!("{} holds no rows", args.input.display());
    }
    if p.skipped_cells > 0 {
        eprintln!(
            "note: {} nested cells (arrays, maps, records) were left out",
            p.skipped_cells
        );
    }
    p.summary.flush();
    let signature = p.summary.to_bytes(&p.interner)?;
    Ok(ModelReference {
        model_id: args.model.clone(),
        model_version: args.version.clone(),
        created_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
        rows: p.rows,
        source: args
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        signature,
    })
}

/// `driftwatch profile`.
pub async fn run(settings: &Settings, args: ProfileArgs) -> anyhow::Result<()> {
    let reference = build(&args)?;
    let summary = format!(
        "{} rows of {} profiled for {}/{} ({} bytes)",
        reference.rows,
        reference.source,
        reference.model_id,
        reference.model_version,
        reference.signature.len()
    );
    if let Some(out) = &args.output {
        std::fs::write(out, to_json(&reference)?)
            .with_context(|| format!("writing {}", out.display()))?;
        println!("{summary}; written to {}", out.display());
        return Ok(());
    }
    let producer: FutureProducer = producer_config(&settings.kafka).create()?;
    let topic = &settings.topics.model_references;
    let payload = to_avro(&reference)?;
    producer
        .send(
            FutureRecord::to(topic)
                .key(&reference.key())
                .payload(&payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("publishing to {topic}: {e}"))?;
    println!("{summary}; published to {topic}");
    Ok(())
}
