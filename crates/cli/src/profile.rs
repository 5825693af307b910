//! `driftwatch profile`: a reference profile of a model version from its training data.
//!
//! Reads training rows (CSV with a header, JSON lines, an Avro object container file or
//! Parquet; see [`crate::input`] for how cells are typed),
//! summarizes every column with the same mergeable summaries the join stage builds from live
//! predictions (distinct-value samples / frequent items / HLL), and publishes the result to the
//! compacted `model-references` topic keyed by `model_id/model_version` — or writes it to a
//! file. The monitor compares live traffic with it instead of with the first hour of traffic.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use driftwatch_codec::{to_avro, to_json};
use driftwatch_core::summary::{FeatureId, FeatureInterner, SignatureSummary};
use driftwatch_core::ModelReference;
use driftwatch_worker::clients::producer_config;
use driftwatch_worker::settings::Settings;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::input::{self, Cell, InputFormat, Sink};

/// Arguments of `driftwatch profile`.
#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// Model id the profile is for.
    #[arg(long)]
    pub model: String,
    /// Model version the profile is for.
    #[arg(long)]
    pub version: String,
    /// Training rows: .csv (with a header), .jsonl / .ndjson, .avro (object container file)
    /// or .parquet.
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

struct Profiler {
    interner: FeatureInterner,
    summary: SignatureSummary,
    label_column: Option<String>,
    ignore: Vec<String>,
    /// By slot: the label (`None`) or a feature.
    slots: Vec<Option<FeatureId>>,
    rows: u64,
    skipped_cells: u64,
}

impl Sink for Profiler {
    fn column(&mut self, name: &str) -> Result<Option<usize>, String> {
        if self.ignore.iter().any(|c| c == name) {
            return Ok(None);
        }
        let slot = if self.label_column.as_deref() == Some(name) {
            None
        } else {
            Some(
                self.interner
                    .intern(name)
                    .map_err(|e| format!("column `{name}`: {e}"))?,
            )
        };
        self.slots.push(slot);
        Ok(Some(self.slots.len() - 1))
    }

    fn cell(&mut self, slot: usize, cell: Cell<'_>, _at: u64) {
        let Some(target) = self.slots.get(slot).copied() else {
            return;
        };
        match (target, cell) {
            (_, Cell::Nested) => self.skipped_cells += 1,
            (None, Cell::Missing) => {}
            (None, Cell::Number(v)) => self.summary.update_output(None, Some(v), None),
            (None, Cell::Category(l)) => self.summary.update_output(Some(l), None, None),
            (Some(id), Cell::Missing) => self.summary.update_missing(id),
            (Some(id), Cell::Number(v)) => self.summary.update_number(id, v),
            (Some(id), Cell::Category(c)) => self.summary.update_category(id, c),
        }
    }

    fn rows(&mut self, n: u64) {
        self.rows += n;
    }
}

fn format_of(args: &ProfileArgs) -> anyhow::Result<InputFormat> {
    if let Some(f) = args.format {
        return Ok(f);
    }
    match InputFormat::of_path(&args.input) {
        Some(f) => Ok(f),
        None => bail!(
            "cannot tell the format of {} from its extension: pass --format csv|jsonl|avro|parquet",
            args.input.display()
        ),
    }
}

/// Builds the reference from the input file.
pub fn build(args: &ProfileArgs) -> anyhow::Result<ModelReference> {
    let format = format_of(args)?;
    let mut p = Profiler {
        interner: FeatureInterner::new(),
        summary: SignatureSummary::default(),
        label_column: args.label_column.clone(),
        ignore: args.ignore.clone(),
        slots: Vec::new(),
        rows: 0,
        skipped_cells: 0,
    };
    input::read(&args.input, format, &mut p, true)?;
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
