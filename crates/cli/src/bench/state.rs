//! `driftwatch bench state`: the join buffer under a memory budget, in-process, no Kafka.
//!
//! 1. **Insert** `--pending` predictions over one day of event time (keys are hashes, so
//!    the cold tier sees random keys); none has a label yet, so all are pending at the end.
//!    The store's bytes on disk per pending prediction are taken here.
//! 2. **Match** labels for every second prediction, in event-time order, each `1 + 6·i/N`
//!    days after its prediction (so spread over 1–7 days); the watermark follows the labels,
//!    so sweeps expire predictions as their 7-day timeout passes. Each label's buffer call is
//!    timed (hdrhistogram).
//! 3. **Expire** the rest: the watermark moves past every timeout.
//!
//! It ends with one line of `key=value` pairs. Peak memory is measured from outside
//! (`/usr/bin/time -f %M`): an in-process figure would not see what the store's threads use.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use driftwatch_core::join::{
    hot_capacity_for_budget, Actual, ClassId, JoinBuffer, JoinEvent, LabelIn, ModelVersionId,
    Predicted, PredictionIn, RequestKey,
};
use driftwatch_state::{StateStore, StoreMemory};
use hdrhistogram::Histogram;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Label timeout: every label of the run (at most 7 days late) matches.
const LABEL_TIMEOUT_MS: i64 = 7 * DAY_MS + HOUR_MS;
const ORPHAN_TIMEOUT_MS: i64 = DAY_MS;
const BASE_MS: i64 = 1_760_000_000_000;

/// `driftwatch bench state`.
#[derive(clap::Args, Debug)]
pub struct StateArgs {
    /// Pending predictions to insert.
    #[arg(long, default_value_t = 1_000_000)]
    pub pending: u64,
    /// Memory for the entries kept in memory (e.g. 256MiB, 1GiB); the rest goes to disk.
    #[arg(long, default_value = "256MiB")]
    pub memory_budget: bytesize::ByteSize,
    /// Where the disk store lives (its `join-store` folder is wiped first). Without it
    /// everything stays in memory, as without `join.state.dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
}

fn key(i: u64) -> RequestKey {
    RequestKey::from_request_id(i.to_le_bytes())
}

/// Runs the benchmark and prints its line.
pub fn run(args: &StateArgs) -> anyhow::Result<()> {
    let n = args.pending;
    if n < 2 {
        bail!("--pending must be at least 2");
    }
    let mut buffer = JoinBuffer::new(
        LABEL_TIMEOUT_MS,
        ORPHAN_TIMEOUT_MS,
        LABEL_TIMEOUT_MS.min(ORPHAN_TIMEOUT_MS) / 8,
    );
    let store = match &args.state_dir {
        Some(dir) => {
            let store = StateStore::open_fresh(dir, StoreMemory::default())?;
            let tier = store.tier(0)?;
            buffer.set_cold_tier(
                Box::new(tier),
                hot_capacity_for_budget(args.memory_budget.as_u64()),
            );
            Some(store)
        }
        None => None,
    };
    let (mut matched, mut expired, mut other) = (0u64, 0u64, 0u64);
    let mut sink = |e: JoinEvent| match e {
        JoinEvent::Matched(_) => matched += 1,
        JoinEvent::ExpiredUnlabeled { .. } => expired += 1,
        _ => other += 1,
    };
    let model = ModelVersionId(1);
    let n_i = i64::try_from(n).context("--pending too large")?;
    let pred_time = |i: u64| BASE_MS + i64::try_from(i).unwrap_or(0) * DAY_MS / n_i;
    let started = Instant::now();

    for i in 0..n {
        let p = PredictionIn {
            key: key(i),
            model,
            time: pred_time(i),
            predicted: Predicted::Class(ClassId(1)),
            score: Some(0.5),
        };
        buffer.on_prediction(&p, &mut sink);
    }
    let insert_s = started.elapsed().as_secs_f64();
    let pending = buffer.stats().pending_predictions;
    let hot_at_peak = buffer.hot_len();
    let disk_at_peak = store.as_ref().map_or(0, StateStore::disk_bytes);

    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3)?;
    for i in (1..n).step_by(2) {
        let delay = DAY_MS + 6 * DAY_MS * i64::try_from(i).unwrap_or(0) / n_i;
        let l = LabelIn {
            key: key(i),
            model_hint: None,
            time: pred_time(i) + delay,
            actual: Actual::Class(ClassId(1)),
        };
        let t = Instant::now();
        buffer.on_label(&l, &mut sink);
        let ns = u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX);
        latency.saturating_record(ns.max(1));
        buffer.advance_watermark(l.time, &mut sink);
    }
    let end = pred_time(n) + 7 * DAY_MS + LABEL_TIMEOUT_MS + ORPHAN_TIMEOUT_MS + 1;
    buffer.advance_watermark(end, &mut sink);
    buffer.sweep(&mut sink);
    let elapsed = started.elapsed().as_secs_f64();
    if let Some(e) = buffer.cold_error() {
        bail!("{e}");
    }
    let labels = n / 2;
    if matched != labels || expired != n - labels || other != 0 || !buffer.is_empty() {
        bail!(
            "wrong outcome: matched={matched} expired={expired} other={other} left={}",
            buffer.len()
        );
    }
    let inputs = n + labels;
    println!(
        "pending={pending} memory_budget={} store={} hot_at_peak={hot_at_peak} \
         disk_bytes_per_pending={:.1} inputs={inputs} inputs_per_s={:.0} insert_per_s={:.0} \
         match_p50_us={:.2} match_p99_us={:.2} match_max_us={:.1} matched={matched} \
         expired={expired} elapsed_s={elapsed:.1}",
        args.memory_budget.as_u64(),
        if store.is_some() { "disk" } else { "memory" },
        disk_at_peak as f64 / pending.max(1) as f64,
        inputs as f64 / elapsed,
        n as f64 / insert_s,
        latency.value_at_quantile(0.5) as f64 / 1e3,
        latency.value_at_quantile(0.99) as f64 / 1e3,
        latency.max() as f64 / 1e3,
    );
    Ok(())
}
