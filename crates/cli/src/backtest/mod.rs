//! `driftwatch backtest`: replay a history of predictions and labels through the service's
//! join, monitor and retrain policies (`driftwatch_core::backtest`), and report per model and
//! policy the retrains, hours below the accuracy SLO, accuracy-hours lost and cost, as a
//! table, JSON or a self-contained HTML page.
//!
//! Sources are files (JSON lines in the documented JSON form or Avro container files, read in
//! file order, as a topic partition is read) or topics (`topic:NAME`, every partition from
//! `--from` to its end, merged by event time: [`crate::input::topic`]); the two sources are
//! then merged by event time.

mod html;
mod render;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use driftwatch_core::backtest::{Backtest, BacktestConfig, BacktestReport};
use driftwatch_core::monitor::PolicyConfig;
use driftwatch_core::{GroundTruth, Prediction};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::settings::Settings;

use crate::input::records::{InputRecord, RecordReader};
use crate::input::topic::TopicReader;

/// Output formats.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Html,
}

#[derive(clap::Args, Debug)]
pub struct BacktestArgs {
    /// Predictions: a JSON lines file (`.jsonl`, `.ndjson`, `.json`) in the documented JSON
    /// form, an Avro container file (`.avro`) of the Prediction schema, or `topic:NAME`, a
    /// topic of the configured Kafka cluster (JSON or bare Avro records, read committed, from
    /// `--from` to the topic's end when the backtest starts; no offset is committed).
    #[arg(long, value_name = "SRC")]
    pub predictions: String,
    /// Ground-truth labels, in the same forms.
    #[arg(long, value_name = "SRC")]
    pub ground_truth: String,
    /// Replay predictions from this event time on (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Replay predictions before this event time (RFC 3339 or ms since the epoch); labels
    /// are read up to a label timeout later.
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<i64>,
    /// A retrain policy to compare (TOML, or JSON by extension: the fields of
    /// `[monitor.detection.default.policy]`), applied to every model and named after the file. May be
    /// given several times.
    #[arg(long = "policy", value_name = "FILE")]
    pub policies: Vec<PathBuf>,
    /// The accuracy SLO. Default per model: its reference accuracy minus
    /// `accuracy_drop.min_drop`.
    #[arg(long, value_name = "X")]
    pub slo_accuracy: Option<f64>,
    /// Cost of one retrain, in the unit of the policy's `accuracy_hour_cost`. Default: the
    /// model's policy's `retrain_cost`.
    #[arg(long, value_name = "C")]
    pub retrain_cost: Option<f64>,
    /// Interval of the `fixed-<interval>` baseline.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    pub fixed_interval: std::time::Duration,
    /// From a retrain decision to the retrained model serving.
    #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
    pub training_delay: std::time::Duration,
    /// Summarize features too, so feature-drift detectors run (needed when a policy lists
    /// them); several times slower.
    #[arg(long)]
    pub features: bool,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// Milliseconds since the epoch, or an RFC 3339 time.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("`{s}` is neither ms since the epoch nor an RFC 3339 time: {e}"))?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("`{s}` is before 1970"))?;
    i64::try_from(d.as_millis()).map_err(|_| format!("`{s}` is too far away"))
}

fn ms(d: std::time::Duration, name: &str) -> anyhow::Result<i64> {
    i64::try_from(d.as_millis()).with_context(|| format!("--{name} is too long"))
}

/// A policy file: TOML, or JSON when its extension says so.
fn read_policy(path: &Path) -> anyhow::Result<(String, PolicyConfig)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let json = path.extension().is_some_and(|e| e == "json");
    let policy: PolicyConfig = if json {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    } else {
        config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(anyhow::Error::from)
    }
    .with_context(|| format!("invalid policy {}", path.display()))?;
    policy
        .validate_costs()
        .map_err(|(field, m)| anyhow::anyhow!("invalid policy {}: {field}: {m}", path.display()))?;
    let name = path
        .file_stem()
        .map_or_else(|| "policy".into(), |s| s.to_string_lossy().into_owned());
    Ok((name, policy))
}

/// Where records come from: a file, or a topic.
enum History<T: InputRecord> {
    File(Box<RecordReader<T>>),
    Topic(Box<TopicReader<T>>),
}

impl<T: InputRecord> Iterator for History<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        match self {
            History::File(r) => r.next(),
            History::Topic(r) => r.next(),
        }
    }
}

impl<T: InputRecord> History<T> {
    /// An error that ended the read early.
    fn failed(&mut self) -> Option<String> {
        match self {
            History::File(r) => r.failed.take().map(|e| e.to_string()),
            History::Topic(r) => r.failed.take(),
        }
    }

    /// Records that did not decode, and the first such error.
    fn undecodable(&mut self) -> (u64, Option<String>) {
        match self {
            History::File(r) => (r.undecodable, r.first_error.take().map(|e| e.to_string())),
            History::Topic(r) => (r.undecodable, r.first_error.take()),
        }
    }
}

fn open<T: InputRecord>(
    settings: &Settings,
    src: &str,
    from: Option<i64>,
) -> anyhow::Result<History<T>> {
    match src.strip_prefix("topic:") {
        Some(topic) => {
            let config = consumer_config(&settings.kafka, "driftwatch-backtest");
            let timeout = Duration::from_secs(30);
            Ok(History::Topic(Box::new(TopicReader::open(
                &config, topic, from, timeout,
            )?)))
        }
        None => Ok(History::File(Box::new(RecordReader::open(Path::new(src))?))),
    }
}

/// The configuration these arguments and settings describe.
fn config(settings: &Settings, args: &BacktestArgs) -> anyhow::Result<BacktestConfig> {
    let mut names = vec![
        "configured".to_owned(),
        "no-retrain".to_owned(),
        format!(
            "fixed-{}",
            driftwatch_core::backtest::duration_name(ms(args.fixed_interval, "fixed-interval")?)
        ),
    ];
    let mut policies = Vec::new();
    for path in &args.policies {
        let (name, p) = read_policy(path)?;
        if names.contains(&name) {
            bail!("policy {}: the name `{name}` is taken", path.display());
        }
        names.push(name.clone());
        policies.push((name, p));
    }
    if let Some(x) = args.slo_accuracy {
        if !(0.0..=1.0).contains(&x) {
            bail!("--slo-accuracy {x} must be in [0, 1]");
        }
    }
    if let Some(c) = args.retrain_cost {
        if !(c.is_finite() && c >= 0.0) {
            bail!("--retrain-cost {c} must be finite and >= 0");
        }
    }
    Ok(BacktestConfig {
        join: settings.join_config()?,
        monitor: settings.monitor.detection.clone(),
        policies,
        fixed_interval_ms: ms(args.fixed_interval, "fixed-interval")?,
        training_delay_ms: ms(args.training_delay, "training-delay")?,
        slo_accuracy: args.slo_accuracy,
        retrain_cost: args.retrain_cost,
        bucket_width_ms: ms(settings.join.bucket_width, "join.bucket_width")?,
        features: args.features,
    })
}

/// Replays both sources, merged by event time, within `[from, to)` for predictions and
/// `[from, to + label timeout)` for labels. Returns the report and the inputs read.
fn replay(
    config: BacktestConfig,
    predictions: &mut History<Prediction>,
    labels: &mut History<GroundTruth>,
    from: Option<i64>,
    to: Option<i64>,
) -> anyhow::Result<(BacktestReport, u64)> {
    let from = from.unwrap_or(i64::MIN);
    let longest_timeout = config
        .join
        .label_timeout_overrides_ms
        .values()
        .copied()
        .chain([config.join.label_timeout_ms])
        .max()
        .unwrap_or(0);
    let label_to = to.map_or(i64::MAX, |t| t.saturating_add(longest_timeout));
    let to = to.unwrap_or(i64::MAX);
    let mut backtest = Backtest::new(config)?;
    let mut p = predictions
        .filter(|r| (from..to).contains(&r.timestamp))
        .peekable();
    let mut l = labels
        .filter(|r| (from..label_to).contains(&r.timestamp))
        .peekable();
    let mut read = 0u64;
    loop {
        let take_prediction = match (p.peek(), l.peek()) {
            (Some(a), Some(b)) => a.timestamp <= b.timestamp,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_prediction {
            if let Some(r) = p.next() {
                backtest.push_prediction(&r);
            }
        } else if let Some(r) = l.next() {
            backtest.push_label(&r);
        }
        read += 1;
    }
    Ok((backtest.finish(), read))
}

pub fn run(settings: &Settings, args: &BacktestArgs) -> anyhow::Result<()> {
    let config = config(settings, args)?;
    let mut predictions = open::<Prediction>(settings, &args.predictions, args.from)?;
    let mut labels = open::<GroundTruth>(settings, &args.ground_truth, args.from)?;
    let started = Instant::now();
    let (mut report, read) = replay(config, &mut predictions, &mut labels, args.from, args.to)?;
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(failed) = predictions.failed().or(labels.failed()) {
        bail!("{failed}");
    }
    for (n, first) in [predictions.undecodable(), labels.undecodable()] {
        if let Some(e) = first {
            eprintln!("note: {n} record(s) did not decode and count as rejected; the first: {e}");
        }
        report.rejected += n;
    }
    eprintln!(
        "replayed {read} inputs in {elapsed:.2} s ({:.0} inputs/s, reading included)",
        read as f64 / elapsed.max(1e-9)
    );
    let text = match args.format {
        Format::Table => render::table(&report),
        Format::Json => render::json(&report)?,
        Format::Html => html::page(&report, &args.predictions, &args.ground_truth),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .context("writing the report")?,
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_ms_or_rfc3339() {
        assert_eq!(parse_time("1767225600000"), Ok(1_767_225_600_000));
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Ok(1_767_225_600_000));
        assert!(parse_time("yesterday").is_err());
    }
}
