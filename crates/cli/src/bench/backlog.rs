//! Phases 1–4 of `driftwatch bench`, on one backlog: produce it, read it raw, run the pipeline
//! over it (join and end-to-end throughput), restore the join state it left.

use std::time::{Duration, Instant};

use anyhow::Context;
use driftwatch_generator::publish::{publish_with, Pace};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::join::{JoinStageHandle, TIMED_EVERY};
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};

use super::completion::{self, Committed, Finish, MonitorCommits};
use super::outside;
use super::{drop_topics, fresh, generator, now_ms, topics, BenchOptions, LabelDelays};

/// The backlog's predictions end this long before the run. Its labels come at most half of it
/// after their predictions (the generator's default tail reaches a day; about 0.3 % of the
/// labels are later than 30 min and are lost instead), so every event time lies in the past:
/// the monitor judges an epoch only once the join's watermark passed it, and a label stamped
/// in the future would keep the backlog's end waiting for the wall clock.
const BACKLOG_AGE_MS: i64 = 3_600_000;

/// Phases 1–4: the backlog, the raw consume rate, the join's and the whole pipeline's
/// catch-up rates (the join's returned, inputs/s) and the restore.
pub(super) async fn maximum(settings: &Settings, opts: &BenchOptions) -> anyhow::Result<f64> {
    // 1. Backlog.
    let s = fresh(settings, "max");
    topics(&s, opts.partitions).await?;
    let span_rate = 1000.0;
    let start = now_ms() - (opts.predictions as f64 / span_rate * 1000.0) as i64 - BACKLOG_AGE_MS;
    let g = generator(
        opts.seed,
        opts.predictions,
        span_rate,
        start,
        LabelDelays::AtMost(BACKLOG_AGE_MS / 2),
    )?;
    // Records come in event-time order: the last one ends the backlog's event time.
    let mut data_end = i64::MIN;
    let report = publish_with(
        &s.kafka,
        &s.topics,
        g.inspect(|r| data_end = data_end.max(r.event_time)),
        Pace::Unthrottled,
        opts.crc32_labels(),
        std::future::pending(),
    )
    .await?;
    let total = report.predictions + report.labels;
    if report.failed > 0 {
        println!(
            "  note: {} records were not delivered and are left out",
            report.failed
        );
    }
    println!(
        "  produce:      {total} records in {:.2} s = {:.0} records/s",
        report.elapsed.as_secs_f64(),
        total as f64 / report.elapsed.as_secs_f64()
    );

    // 2. Raw consume with an empty handler.
    let consumer: StreamConsumer =
        consumer_config(&s.kafka, &format!("{}-raw", s.kafka.join_group_id)).create()?;
    consumer.subscribe(&[&s.topics.predictions, &s.topics.ground_truth])?;
    let mut stream = consumer.stream();
    let mut n = 0u64;
    let mut first: Option<Instant> = None;
    while n < total {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(_))) => {
                first.get_or_insert_with(Instant::now);
                n += 1;
            }
            Ok(Some(Err(e))) => anyhow::bail!("raw consume: {e}"),
            _ => anyhow::bail!("raw consume stalled after {n} of {total} records"),
        }
    }
    let raw = first.map_or(Duration::ZERO, |f| f.elapsed());
    let raw_rate = n as f64 / raw.as_secs_f64().max(1e-9);
    drop(stream);
    drop(consumer);
    println!("  raw consume:  {n} records in {:.2} s = {raw_rate:.0} records/s (empty handler, from the first record)", raw.as_secs_f64());

    // 3. The pipeline catches up on the same backlog.
    let max_rate = catch_up(&s, total, data_end, raw_rate).await?;

    // 4. Restore the state the pipeline left behind.
    if s.kafka.exactly_once() {
        let pid = std::process::id();
        let before = outside::memory(pid);
        let peak_reset = outside::reset_peak(pid);
        let running = Pipeline::new(&s, Role::Join)?.start();
        let handle = running
            .handles()
            .join
            .clone()
            .context("the pipeline runs the join stage")?;
        let deadline = Instant::now() + Duration::from_secs(600);
        while handle.stats().restore.restores == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        running.stop().await?;
        let r = handle.stats().restore;
        println!(
            "  restore:      {} changelog records ({:.1} MB) → {} join entries in {:.2} s = {:.0} records/s, {:.0} entries/s",
            r.records,
            r.bytes as f64 / 1e6,
            r.entries,
            r.seconds,
            r.records as f64 / r.seconds.max(1e-9),
            r.entries as f64 / r.seconds.max(1e-9)
        );
        if let (Some(b), Some(m), true) = (before, outside::memory(pid), peak_reset) {
            println!(
                "                peak RSS {} MiB during the restore (VmHWM, reset when it began; {} MiB before)",
                m.hwm >> 20,
                b.rss >> 20
            );
        }
    }
    drop_topics(&s).await?;
    Ok(max_rate)
}

fn processed(h: &JoinStageHandle) -> u64 {
    h.stats().events_in.values().sum()
}

/// Phase 3: both stages catch up on the backlog of `total` inputs, whose event time ends at
/// `data_end`. Prints the join's throughput (returned, inputs/s) and the end-to-end throughput,
/// both from the first input the join consumed (see [`completion`] for where each ends).
async fn catch_up(s: &Settings, total: u64, data_end: i64, raw_rate: f64) -> anyhow::Result<f64> {
    let inputs =
        completion::end_offsets(&s.kafka, &[&s.topics.predictions, &s.topics.ground_truth])?;
    let join_group = Committed::new(&s.kafka, &s.kafka.join_group_id)?;
    // The phase's cost as the kernel counts it: CPU time of the whole process (both stages and
    // this loop) and its peak resident set since here.
    let pid = std::process::id();
    let peak_reset = outside::reset_peak(pid);
    let cpu_before = outside::cpu_seconds(pid);
    let running = Pipeline::new(s, Role::Both)?.start();
    let handles = running.handles().clone();
    let join = handles.join.context("the pipeline runs the join stage")?;
    let monitor = handles
        .monitor
        .context("the pipeline runs the monitor stage")?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<Instant> = None;
    let mut all_read: Option<Instant> = None;
    // The join: every input read, and the group's committed offsets at the inputs' ends.
    let join_done = loop {
        let p = processed(&join);
        if p > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if p >= total {
            all_read.get_or_insert_with(Instant::now);
            if join_group.reached(&inputs)? {
                break Some(Instant::now());
            }
        }
        if Instant::now() > deadline || running.is_finished() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let Some((first, join_done)) = first.zip(join_done) else {
        let p = processed(&join);
        running.stop().await?;
        anyhow::bail!(
            "the join stage did not read and commit the backlog within 10 min ({p} of {total} inputs read)"
        );
    };
    // The whole pipeline: the monitor judged every epoch of the backlog, then committed.
    let mut finish = Finish::new(
        MonitorCommits::of(s)?,
        data_end,
        i64::try_from(s.join.bucket_width.as_millis())?,
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let end_to_end = loop {
        if finish.done(&monitor.stats())? {
            break Some(Instant::now());
        }
        if Instant::now() > deadline || running.is_finished() {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (js, ms) = (join.stats(), monitor.stats());
    let cpu = cpu_before
        .zip(outside::cpu_seconds(pid))
        .map(|(a, b)| b - a);
    let memory = outside::memory(pid);
    running.stop().await?;

    let join_took = join_done - first;
    let join_rate = total as f64 / join_took.as_secs_f64().max(1e-9);
    println!(
        "  join:         {total} inputs read and committed by the join stage in {:.2} s = {join_rate:.0} inputs/s ({:.0} % of raw consume; all read after {:.2} s)",
        join_took.as_secs_f64(),
        100.0 * join_rate / raw_rate,
        all_read.map_or(join_took, |t| t - first).as_secs_f64(),
    );
    if let Some(h) = &js.processing_micros {
        println!(
            "                decode+join per message (one in {TIMED_EVERY} timed): p50 {} µs, p99 {} µs, max {} µs",
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.max()
        );
    }
    let partials = js
        .events_out
        .get(&s.topics.model_partials)
        .copied()
        .unwrap_or(0);
    match end_to_end {
        Some(done) => {
            let took = done - first;
            println!(
                "  end to end:   {total} inputs through join and monitor in {:.2} s = {:.0} inputs/s (to the monitor's commit after it judged the backlog's last epoch)",
                took.as_secs_f64(),
                total as f64 / took.as_secs_f64().max(1e-9),
            );
            println!(
                "                {:.2} s after the join's commit: its {} idle timeout moves its watermark past the backlog's end, then a flush, the monitor's last epochs and its commit; {} partials applied ({partials} committed by the join)",
                (done - join_done).as_secs_f64(),
                humantime::format_duration(s.join.idle_timeout),
                ms.partials,
            );
        }
        None => println!(
            "  end to end:   not reached within 2 min of the join's commit: the monitor's event time is at {} (the backlog's last epoch ends at {}); {} partials applied ({partials} committed by the join)",
            ms.progress_ms,
            finish.last_epoch_end(),
            ms.partials
        ),
    }
    if let Some(cpu) = cpu {
        println!(
            "  cost:         {cpu:.2} CPU s for {total} inputs = {:.2} CPU s per million inputs (whole process, user + system, /proc)",
            cpu / (total as f64 / 1e6)
        );
    }
    match memory {
        Some(m) if peak_reset => println!(
            "                peak RSS {} MiB during the catch-up (VmHWM, reset when it began)",
            m.hwm >> 20
        ),
        Some(m) => println!(
            "                peak RSS {} MiB since the bench began (VmHWM; it could not be reset)",
            m.hwm >> 20
        ),
        None => {}
    }
    if js.transactions_aborted + ms.transactions_aborted > 0 {
        println!(
            "                note: {} join and {} monitor transactions were aborted meanwhile: work was done again",
            js.transactions_aborted, ms.transactions_aborted
        );
    }
    Ok(join_rate)
}
