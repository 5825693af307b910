//! Phase 5 of `driftwatch bench`: latency at a given load, traffic published in real time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use driftwatch_codec::from_avro;
use driftwatch_core::ModelMetrics;
use driftwatch_generator::publish::{publish_with, Pace};
use driftwatch_generator::{GeneratedRecord, RecordKind, Side};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::join::TIMED_EVERY;
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use tokio::sync::oneshot;

use super::{drop_topics, fresh, generator, now_ms, topics, BenchOptions, LabelDelays};

/// Phase 5: latency at `offered` inputs/s, published in real time.
pub(super) async fn latency(
    settings: &Settings,
    opts: &BenchOptions,
    offered: f64,
) -> anyhow::Result<()> {
    let mut s = fresh(settings, "latency");
    // A metrics snapshot at every evaluation (default: every 10th), so the time until a label
    // shows in the published metrics is the pipeline's, not the snapshot interval's.
    s.monitor.metrics_interval = s.monitor.commit_interval / 2;
    // Windows end `maturity_ms` (15 min by default) before the latest bucket, to give labels
    // time to arrive; here the metrics are to show outcomes as soon as they are merged.
    s.monitor.detection.default.maturity_ms = 0;
    // The monitor applies an outcome once every join task announced a watermark past its
    // epoch (one bucket width); the watermark trails the data by the allowed lateness. With
    // the defaults (1 min, 5 s) that alone is 5–65 s in real time; this phase measures the
    // pipeline with 1 s buckets and 200 ms of lateness.
    s.join.bucket_width = Duration::from_secs(1);
    s.join.allowed_lateness = Duration::from_millis(200);
    topics(&s, opts.partitions).await?;
    let running = Pipeline::new(&s, Role::Both)?.start();
    let join = running
        .handles()
        .join
        .clone()
        .context("the pipeline runs the join stage")?;
    let (stop_metrics, metrics_stop) = oneshot::channel::<()>();
    let metrics = follow_metrics(&s, metrics_stop)?;
    tokio::time::sleep(Duration::from_secs(4)).await; // consumer groups form
    let rate = (offered / 1.95).max(1.0); // predictions/s; each brings ~0.95 label
    let n_lat = (rate * opts.latency_time.as_secs_f64()) as u64;
    // The traffic is generated before the clock starts, so the generator's own work does not
    // compete with the stages and the broker while latency is measured; its event times start
    // when publishing does. The time to generate it is estimated from a sample first.
    let sample = 20_000.min(n_lat.max(1));
    let t = Instant::now();
    let sampled = generator(opts.seed + 1, sample, rate, now_ms(), LabelDelays::Short)?.count();
    let per_record = t.elapsed().as_secs_f64() / sampled.max(1) as f64;
    let lead = Duration::from_secs_f64(per_record * (n_lat as f64 * 2.0) * 1.5 + 1.0);
    let start = now_ms() + i64::try_from(lead.as_millis()).unwrap_or(i64::MAX / 2);
    let records: Vec<_> =
        generator(opts.seed + 1, n_lat.max(1), rate, start, LabelDelays::Short)?.collect();
    let labels = label_times(&records);
    let wait = start - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait.unsigned_abs())).await;
    } else {
        println!(
            "  note: traffic generated {} ms after its start time",
            -wait
        );
    }
    let report = publish_with(
        &s.kafka,
        &s.topics,
        records.iter(),
        Pace::TimeScale(1.0),
        opts.crc32_labels(),
        std::future::pending(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let stats = join.stats();
    running.stop().await?;
    let _ = stop_metrics.send(());
    let sightings = metrics.await?;
    let to_metrics = metrics_latency(&labels, &sightings);
    drop(records);
    // Predictions span `latency_time`; their labels follow within seconds at the same rate.
    println!(
        "  latency:      {:.0} inputs/s offered in real time ({} predictions over {} s, {} labels), published in {:.1} s",
        (report.predictions + report.labels) as f64 / opts.latency_time.as_secs_f64(),
        report.predictions,
        opts.latency_time.as_secs(),
        report.labels,
        report.elapsed.as_secs_f64(),
    );
    match &stats.outcome_lag_ms {
        Some(h) if !h.is_empty() => println!(
            "                label produced → outcome joined: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} outcomes)",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.9),
            h.value_at_quantile(0.99),
            h.max(),
            h.len()
        ),
        _ => println!("                no outcome was joined"),
    }
    // `per_unit`: the histogram's units in one printed `unit`.
    let quantiles = |name: &str,
                     unit: &str,
                     per_unit: u64,
                     h: &Option<hdrhistogram::Histogram<u64>>| {
        if let Some(h) = h.as_ref().filter(|h| !h.is_empty()) {
            let q = |v: u64| v / per_unit;
            println!(
                "                {name}: p50 {} {unit}, p90 {} {unit}, p99 {} {unit}, max {} {unit}",
                q(h.value_at_quantile(0.5)),
                q(h.value_at_quantile(0.9)),
                q(h.value_at_quantile(0.99)),
                q(h.max())
            );
        }
    };
    let shown: u64 = to_metrics.as_ref().map_or(0, |h| h.len());
    let expected: usize = labels.values().map(Vec::len).sum();
    quantiles(
        &format!("label produced → in the published metrics ({shown} of {expected} labels)"),
        "ms",
        1,
        &to_metrics,
    );
    quantiles(
        "generator behind its schedule",
        "ms",
        1,
        &report.behind_schedule_ms,
    );
    quantiles(
        "record sent → read by the stage",
        "ms",
        1,
        &stats.input_age_ms,
    );
    quantiles(
        &format!("decode+join per message (one in {TIMED_EVERY} timed)"),
        "µs",
        1,
        &stats.processing_micros,
    );
    quantiles(
        "loop held by a commit's batch",
        "µs",
        1,
        &stats.batch_micros,
    );
    quantiles(
        "transaction (commit start → committed)",
        "ms",
        1000,
        &stats.commit_micros,
    );
    drop_topics(&s).await?;
    Ok(())
}

/// A metrics snapshot as the bench saw it: when it arrived (wall clock, ms), for which model,
/// and how many matched outcomes its window held.
#[derive(Debug, Clone, PartialEq)]
struct Sighting {
    at_ms: i64,
    model: String,
    window_ms: i64,
    labeled: u64,
}

/// Reads the metrics topic (committed records only, like a dashboard) until `stop`.
fn follow_metrics(
    s: &Settings,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<tokio::task::JoinHandle<Vec<Sighting>>> {
    let consumer: StreamConsumer =
        consumer_config(&s.kafka, &format!("{}-metrics-reader", s.monitor.group_id))
            .set("enable.auto.commit", "false")
            .create()?;
    consumer.subscribe(&[&s.topics.model_metrics])?;
    Ok(tokio::spawn(async move {
        let mut seen = Vec::new();
        let mut stream = consumer.stream();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                m = stream.next() => match m {
                    Some(Ok(m)) => {
                        if let Some(Ok(r)) = m.payload().map(from_avro::<ModelMetrics>) {
                            seen.push(Sighting {
                                at_ms: now_ms(),
                                model: r.model_id,
                                window_ms: r.window_end - r.window_start,
                                labeled: r.labeled,
                            });
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        seen
    }))
}

/// Event times of the labels that will be joined (originals, not duplicates), per model,
/// sorted. With traffic published in real time, a label's event time is its publication time.
fn label_times(records: &[GeneratedRecord]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        if let (Side::Labels, RecordKind::Original, Some(model)) = (r.side, r.kind, &r.model_id) {
            out.entry(model.clone()).or_default().push(r.event_time);
        }
    }
    for times in out.values_mut() {
        times.sort_unstable();
    }
    out
}

/// Per label: the time from its publication until a published snapshot of its model's
/// widest window counted it. Snapshots carry counts, not ids, so a snapshot counting `n`
/// outcomes is taken to show the `n` earliest labels: exact when labels are joined in the
/// order they were published, and off by at most the skew between partitions otherwise.
fn metrics_latency(
    labels: &BTreeMap<String, Vec<i64>>,
    sightings: &[Sighting],
) -> Option<Histogram<u64>> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3).ok()?;
    for (model, times) in labels {
        let Some(widest) = sightings
            .iter()
            .filter(|s| &s.model == model)
            .map(|s| s.window_ms)
            .max()
        else {
            continue;
        };
        let mut shown = 0usize;
        let mut seen: Vec<&Sighting> = sightings
            .iter()
            .filter(|s| &s.model == model && s.window_ms == widest)
            .collect();
        seen.sort_by_key(|s| s.at_ms);
        for s in seen {
            let upto = usize::try_from(s.labeled)
                .unwrap_or(usize::MAX)
                .min(times.len());
            for t in times.iter().take(upto).skip(shown) {
                h.saturating_record(u64::try_from(s.at_ms - t).unwrap_or(0));
            }
            shown = shown.max(upto);
        }
    }
    Some(h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn seen(at_ms: i64, model: &str, window_ms: i64, labeled: u64) -> Sighting {
        Sighting {
            at_ms,
            model: model.into(),
            window_ms,
            labeled,
        }
    }

    #[test]
    fn a_snapshot_shows_the_earliest_labels_it_counts() {
        let labels = BTreeMap::from([("m".to_string(), vec![100, 200, 300])]);
        let sightings = [
            seen(1_000, "m", 60_000, 2),
            // A narrower window is ignored; a count that does not grow shows nothing new.
            seen(1_100, "m", 30_000, 3),
            seen(1_500, "m", 60_000, 2),
            seen(2_300, "m", 60_000, 3),
            seen(2_000, "other", 60_000, 9),
        ];
        let h = metrics_latency(&labels, &sightings).unwrap();
        assert_eq!(h.len(), 3);
        // 100 and 200 seen at 1 000, 300 at 2 300.
        assert!(h.equivalent(h.min(), 800));
        assert!(h.equivalent(h.value_at_quantile(0.5), 900));
        assert!(h.equivalent(h.max(), 2_000));
    }

    #[test]
    fn labels_never_shown_are_left_out() {
        let labels = BTreeMap::from([("m".to_string(), vec![100, 200])]);
        let h = metrics_latency(&labels, &[seen(500, "m", 1, 1)]).unwrap();
        assert_eq!(h.len(), 1);
        assert!(metrics_latency(&labels, &[]).unwrap().is_empty());
    }
}
