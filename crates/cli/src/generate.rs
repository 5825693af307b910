//! `driftwatch generate`: synthetic traffic to Kafka or to files.

use std::fs::File;
use std::future::Future;
use std::io::{BufWriter, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use driftwatch_codec::{decode_ground_truth, decode_prediction, to_json};
use driftwatch_generator::publish::{publish, Pace};
use driftwatch_generator::{GeneratorConfig, RecordKind, Scenario, Side, TrafficGenerator};
use driftwatch_worker::settings::Settings;

use crate::{GenerateArgs, ScenarioArg};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The generator configuration these arguments describe.
pub fn config(args: &GenerateArgs) -> anyhow::Result<GeneratorConfig> {
    let mut c = match &args.generator_config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml_config(&text)
                .with_context(|| format!("invalid generator configuration {}", path.display()))?
        }
        None => GeneratorConfig::two_models(args.seed),
    };
    c.seed = args.seed;
    c.predictions_per_second = args.rate;
    c.duration_ms = i64::try_from(args.duration.as_millis()).context("--duration too long")?;
    c.start_ms = args.start_ms.unwrap_or_else(|| {
        if (args.time_scale - 1.0).abs() < f64::EPSILON {
            now_ms()
        } else {
            now_ms() - c.duration_ms
        }
    });
    if matches!(args.scenario, ScenarioArg::Drift) {
        c.scenario = Scenario::Drift;
    }
    let c = c.resolved();
    c.validate()?;
    Ok(c)
}

fn toml_config(text: &str) -> anyhow::Result<GeneratorConfig> {
    let value = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()?;
    Ok(value.try_deserialize()?)
}

pub async fn run(
    settings: &Settings,
    args: GenerateArgs,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let cfg = config(&args)?;
    let generator = TrafficGenerator::new(cfg)?;
    if let Some(dir) = &args.output_dir {
        return write_files(dir, generator);
    }
    let pace = if args.time_scale <= 0.0 {
        Pace::Unthrottled
    } else {
        Pace::TimeScale(args.time_scale)
    };
    let report = publish(&settings.kafka, &settings.topics, generator, pace, stop).await?;
    if report.failed > 0 {
        anyhow::bail!(
            "{} records were not delivered (see the log); {} predictions and {} labels were",
            report.failed,
            report.predictions,
            report.labels
        );
    }
    println!(
        "published {} predictions and {} labels to {} / {} in {:.1} s",
        report.predictions,
        report.labels,
        settings.topics.predictions,
        settings.topics.ground_truth,
        report.elapsed.as_secs_f64()
    );
    Ok(())
}

fn write_files(dir: &std::path::Path, generator: TrafficGenerator) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let open = |name: &str| -> anyhow::Result<BufWriter<File>> {
        let path = dir.join(name);
        Ok(BufWriter::new(
            File::create(&path).with_context(|| format!("creating {}", path.display()))?,
        ))
    };
    let mut predictions = open("predictions.jsonl")?;
    let mut labels = open("ground-truth.jsonl")?;
    let (mut np, mut nl, mut skipped) = (0u64, 0u64, 0u64);
    for r in generator {
        if r.kind == RecordKind::Garbage {
            // Garbage is only meaningful as bytes on a topic.
            skipped += 1;
            continue;
        }
        match r.side {
            Side::Predictions => {
                writeln!(predictions, "{}", to_json(&decode_prediction(&r.payload)?)?)?;
                np += 1;
            }
            Side::Labels => {
                writeln!(labels, "{}", to_json(&decode_ground_truth(&r.payload)?)?)?;
                nl += 1;
            }
        }
    }
    predictions.flush()?;
    labels.flush()?;
    println!(
        "wrote {np} predictions and {nl} labels to {} ({skipped} garbage records skipped)",
        dir.display()
    );
    Ok(())
}
