//! `driftwatch bench overload`: one worker process offered about twice what it can take, then
//! nothing, on a real broker; watched from outside.
//!
//! 1. **Capacity.** A backlog of generated traffic (event times in the past) is produced before
//!    the worker starts; the worker (`driftwatch run --role all`, this binary, a process of its
//!    own) then reads it, and its capacity is the backlog over the time from its first input
//!    read to its last, as its `/metrics` counters show. `--capacity` skips the measurement.
//! 2. **Overload.** For `--overload-time`, traffic is published in real time at `--factor` ×
//!    the capacity, by `--producers` publishing tasks of this process (each its own generator
//!    and producer). The rate really offered is what the producers achieved, and is reported.
//! 3. **Catch-up.** Publishing stops; the worker catches up. The catch-up time runs from the
//!    end of the overload to the moment the worker has read every input produced.
//! 4. **Accounting.** Once the last predictions' timeouts passed, the worker's outcome counters
//!    (`driftwatch_join_inputs_total`) must equal what the generator made: every label
//!    matched, every prediction without a label expired, every duplicate counted as one,
//!    nothing late, orphaned or dead-lettered.
//!
//! All along, every 250 ms, a sampler reads the worker's `/proc/<pid>/status` (`VmRSS`,
//! `VmHWM`), its `/metrics` (`kafka_consumergroup_lag` of the input topics, inputs read) and
//! its `/readyz` (`lag.total`). Memory is never taken from the worker's own report.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use driftwatch_generator::publish::{publish_with, Pace, PublishReport};
use driftwatch_generator::{GeneratedRecord, RecordKind, Side};
use driftwatch_worker::settings::Settings;

use super::outside::{self, Memory};
use super::{drop_topics, fresh, generator, now_ms, topics, LabelDelays};

/// Label and orphan timeout of the run: above the generated label delays (at most 5 s), so
/// every label matches, and short, so that the pending entries (rate × both timeouts) stay
/// within the hot table of the default budget and the run ends a few seconds after the data.
const TIMEOUT: Duration = Duration::from_secs(10);

/// `driftwatch bench overload`.
#[derive(clap::Args, Debug)]
pub struct OverloadArgs {
    /// The broker (overrides kafka.bootstrap_servers).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// The worker's capacity, inputs/s; measured on a backlog when absent.
    #[arg(long)]
    pub capacity: Option<f64>,
    /// Predictions of the capacity backlog (each brings about 0.95 labels).
    #[arg(long, default_value_t = 1_000_000)]
    pub capacity_predictions: u64,
    /// Offered load during the overload, as a multiple of the capacity.
    #[arg(long, default_value_t = 2.0)]
    pub factor: f64,
    /// How long the overload lasts.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub overload_time: Duration,
    /// Publishing tasks, each with its own generator and producer.
    #[arg(long, default_value_t = 2)]
    pub producers: u32,
    /// Partitions of each input topic.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(i32).range(1..=1024))]
    pub partitions: i32,
    /// The worker's `join.state.memory_budget` (its local store goes to a temporary folder).
    #[arg(long, default_value = "256MiB")]
    pub memory_budget: bytesize::ByteSize,
    /// Port of the worker's HTTP endpoints on 127.0.0.1.
    #[arg(long, default_value_t = 9899)]
    pub port: u16,
    /// More settings of the worker, `DRIFTWATCH__SECTION__KEY=value` (repeatable).
    #[arg(long = "worker-env")]
    pub worker_env: Vec<String>,
    /// Seed of the generated traffic.
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
}

/// What the generator made, summed over models: the offline reference of the join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Made {
    pub predictions: u64,
    pub labels: u64,
    pub duplicate_predictions: u64,
    pub duplicate_labels: u64,
}

impl Made {
    fn add(&mut self, r: &GeneratedRecord) {
        match (r.side, r.kind) {
            (Side::Predictions, RecordKind::Original) => self.predictions += 1,
            (Side::Labels, RecordKind::Original) => self.labels += 1,
            (Side::Predictions, _) => self.duplicate_predictions += 1,
            (Side::Labels, _) => self.duplicate_labels += 1,
        }
    }

    fn merged(self, o: Made) -> Made {
        Made {
            predictions: self.predictions + o.predictions,
            labels: self.labels + o.labels,
            duplicate_predictions: self.duplicate_predictions + o.duplicate_predictions,
            duplicate_labels: self.duplicate_labels + o.duplicate_labels,
        }
    }

    pub fn inputs(&self) -> u64 {
        self.predictions + self.labels + self.duplicate_predictions + self.duplicate_labels
    }

    /// The outcome counts the join must end with, by `outcome` label of
    /// `driftwatch_join_inputs_total`: every label's prediction is there and its delay is
    /// below the timeout, so labels match, the rest of the predictions expire.
    pub fn expected(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("matched", self.labels),
            (
                "expired_unlabeled",
                self.predictions.saturating_sub(self.labels),
            ),
            ("duplicate_prediction", self.duplicate_predictions),
            ("duplicate_label", self.duplicate_labels),
            ("orphan", 0),
            ("late", 0),
            ("dead_lettered", 0),
        ]
    }
}

/// What the sampler saw.
#[derive(Debug, Clone, Default)]
struct Seen {
    memory: Memory,
    max_rss: u64,
    max_lag: f64,
    max_readyz_lag: i64,
    read: f64,
    /// When the worker read its first input.
    first_read: Option<Instant>,
    outcomes: String,
}

/// The worker process; killed if the bench ends early.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_worker(s: &Settings, args: &OverloadArgs, state: &Path) -> anyhow::Result<Worker> {
    let t = &s.topics;
    let log = std::env::temp_dir().join(format!("{}.log", s.kafka.join_group_id));
    let file = std::fs::File::create(&log)?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["run", "--role", "all"])
        .env(
            "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS",
            &s.kafka.bootstrap_servers,
        )
        .env("DRIFTWATCH__KAFKA__JOIN_GROUP_ID", &s.kafka.join_group_id)
        .env("DRIFTWATCH__MONITOR__GROUP_ID", &s.monitor.group_id)
        .env("DRIFTWATCH__TOPICS__PREDICTIONS", &t.predictions)
        .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", &t.ground_truth)
        .env("DRIFTWATCH__TOPICS__MODEL_PARTIALS", &t.model_partials)
        .env("DRIFTWATCH__TOPICS__DEAD_LETTER", &t.dead_letter)
        .env("DRIFTWATCH__TOPICS__DRIFT_EVENTS", &t.drift_events)
        .env("DRIFTWATCH__TOPICS__RETRAIN_EVENTS", &t.retrain_events)
        .env("DRIFTWATCH__TOPICS__MODEL_METRICS", &t.model_metrics)
        .env("DRIFTWATCH__TOPICS__REPARTITION", &t.repartition)
        .env("DRIFTWATCH__HTTP__BIND", format!("127.0.0.1:{}", args.port))
        .env("DRIFTWATCH__JOIN__STATE__DIR", state)
        .env(
            "DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET",
            args.memory_budget.to_string(),
        )
        .env(
            "DRIFTWATCH__JOIN__LABEL_TIMEOUT",
            humantime::format_duration(TIMEOUT).to_string(),
        )
        .env(
            "DRIFTWATCH__JOIN__ORPHAN_TIMEOUT",
            humantime::format_duration(TIMEOUT).to_string(),
        )
        .env("DRIFTWATCH__JOIN__IDLE_TIMEOUT", "2s")
        .env("DRIFTWATCH_LOG", "warn");
    for kv in &args.worker_env {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--worker-env {kv}: not KEY=value"))?;
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .context("starting the worker")?;
    Ok(Worker { child, log })
}

/// Samples the worker every 250 ms, on a thread of its own, until it exits or `stop` is set.
fn sample(
    pid: u32,
    port: u16,
    inputs: [String; 2],
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let topics: Vec<String> = inputs.iter().map(|t| format!("topic=\"{t}\"")).collect();
        while !stop.load(Ordering::Relaxed) {
            let Some(mem) = outside::memory(pid) else {
                break;
            };
            let metrics = outside::get(port, "/metrics");
            let readyz = outside::get(port, "/readyz");
            if let Ok(mut s) = seen.lock() {
                s.memory = mem;
                s.max_rss = s.max_rss.max(mem.rss);
                if let Some((200, body)) = &metrics {
                    let lag: f64 = topics
                        .iter()
                        .map(|t| {
                            outside::sum(body, "kafka_consumergroup_lag", std::slice::from_ref(t))
                        })
                        .sum();
                    s.max_lag = s.max_lag.max(lag);
                    s.read = topics
                        .iter()
                        .map(|t| {
                            outside::sum(
                                body,
                                "driftwatch_events_in_total",
                                std::slice::from_ref(t),
                            )
                        })
                        .sum();
                    if s.read > 0.0 && s.first_read.is_none() {
                        s.first_read = Some(Instant::now());
                    }
                    s.outcomes = body
                        .lines()
                        .filter(|l| l.starts_with("driftwatch_join_inputs_total{"))
                        .collect::<Vec<_>>()
                        .join("\n");
                }
                if let Some(lag) = readyz.and_then(|(_, b)| outside::readyz_lag(&b)) {
                    s.max_readyz_lag = s.max_readyz_lag.max(lag);
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    })
}

fn snapshot(seen: &Arc<Mutex<Seen>>) -> Seen {
    seen.lock().map(|s| s.clone()).unwrap_or_default()
}

/// Waits until `done` holds for what the sampler saw, or `within` passed (an error naming
/// `what`), or the worker exited (an error).
async fn wait_for(
    worker: &mut Worker,
    seen: &Arc<Mutex<Seen>>,
    within: Duration,
    what: &str,
    done: impl Fn(&Seen) -> bool,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + within;
    loop {
        if done(&snapshot(seen)) {
            return Ok(Instant::now());
        }
        if let Some(status) = worker.child.try_wait()? {
            bail!("the worker exited ({status}); log {}", worker.log.display());
        }
        if Instant::now() > deadline {
            bail!(
                "{what}: not within {}; log {}",
                humantime::format_duration(within),
                worker.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `predictions` at `rate` predictions/s in real time from now, split over
/// `producers` tasks; returns what was made and the reports.
async fn publish_live(
    s: &Settings,
    seed: u64,
    predictions: u64,
    rate: f64,
    producers: u32,
) -> anyhow::Result<(Made, Vec<PublishReport>)> {
    let producers = producers.max(1);
    let start = now_ms() + 1_000;
    // Each publishing task on a thread of its own: as tokio tasks on a busy 2-core machine one
    // could starve the other for tens of seconds, and the second generator's records then
    // came with event times far behind the first's, late for the join though the reference
    // counts them matched.
    let mut threads = Vec::new();
    for i in 0..producers {
        let s = s.clone();
        let share = rate / f64::from(producers);
        let n = predictions / u64::from(producers);
        // Seeds apart: the generator's request ids carry the seed.
        let g = generator(
            seed + 100 + u64::from(i),
            n,
            share,
            start,
            LabelDelays::Short,
        )?;
        threads.push(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut made = Made::default();
            let report = rt.block_on(publish_with(
                &s.kafka,
                &s.topics,
                g.inspect(|r| made.add(r)),
                Pace::TimeScale(1.0),
                None,
                std::future::pending(),
            ))?;
            anyhow::Ok((made, report))
        }));
    }
    let mut made = Made::default();
    let mut reports = Vec::new();
    let joined = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| anyhow::anyhow!("a publishing thread panicked"))?
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })
    .await??;
    for (m, r) in joined {
        made = made.merged(m);
        reports.push(r);
    }
    // The reference holds while the generators keep pace with each other: records of one
    // that fell behind the other by more than the join's allowed lateness arrive late.
    let behind: Vec<u64> = reports
        .iter()
        .filter_map(|r| r.behind_schedule_ms.as_ref().map(|h| h.max()))
        .collect();
    if let (Some(lo), Some(hi)) = (behind.iter().min(), behind.iter().max()) {
        println!(
            "  publishers:   at most {:.1}–{:.1} s behind their schedules",
            *lo as f64 / 1e3,
            *hi as f64 / 1e3
        );
        let lateness = u64::try_from(s.join.allowed_lateness.as_millis()).unwrap_or(u64::MAX);
        if hi - lo > lateness {
            println!(
                "                their lags differ by more than the join's allowed lateness: records of the one further behind may come late, and the accounting below may differ for that reason"
            );
        }
    }
    Ok((made, reports))
}

/// The outcome counts on `/metrics`, summed over models, by outcome.
fn outcome_total(outcomes: &str, outcome: &str) -> u64 {
    outside::sum(
        outcomes,
        "driftwatch_join_inputs_total",
        &[format!("outcome=\"{outcome}\"")],
    ) as u64
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// Runs the overload benchmark and prints its figures.
pub async fn run(settings: &Settings, args: OverloadArgs) -> anyhow::Result<()> {
    let mut settings = settings.clone();
    if let Some(b) = &args.bootstrap_servers {
        settings.kafka.bootstrap_servers = b.clone();
    }
    let s = fresh(&settings, "overload");
    topics(&s, args.partitions).await?;
    let state = std::env::temp_dir().join(format!("{}-state", s.kafka.join_group_id));
    let result = phases(&s, &args, &state).await;
    drop_topics(&s).await?;
    let _ = std::fs::remove_dir_all(&state);
    result
}

async fn phases(s: &Settings, args: &OverloadArgs, state: &Path) -> anyhow::Result<()> {
    println!(
        "driftwatch bench overload against {}: one worker process, {} partitions per input, join.state.memory_budget {}, label and orphan timeouts {}",
        s.kafka.bootstrap_servers,
        args.partitions,
        args.memory_budget,
        humantime::format_duration(TIMEOUT)
    );
    // 1. The capacity backlog, produced before the worker starts.
    let mut made = Made::default();
    if args.capacity.is_none() {
        let n = args.capacity_predictions;
        let span_rate = 1_000.0;
        let start = now_ms() - (n as f64 / span_rate * 1000.0) as i64 - 600_000;
        let g = generator(args.seed, n, span_rate, start, LabelDelays::Short)?;
        let report = publish_with(
            &s.kafka,
            &s.topics,
            g.inspect(|r| made.add(r)),
            Pace::Unthrottled,
            None,
            std::future::pending(),
        )
        .await?;
        if report.failed > 0 {
            bail!("{} backlog records were not delivered", report.failed);
        }
        println!(
            "  backlog:      {} inputs produced in {:.1} s",
            made.inputs(),
            report.elapsed.as_secs_f64()
        );
    }
    let mut worker = start_worker(s, args, state)?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = sample(
        worker.child.id(),
        args.port,
        [s.topics.predictions.clone(), s.topics.ground_truth.clone()],
        seen.clone(),
        stop.clone(),
    );
    let result = measured(s, args, &mut worker, &seen, made).await;
    // A clean stop: SIGTERM, then the exit.
    let _ = Command::new("kill")
        .args(["-TERM", &worker.child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.child.try_wait()?.is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    result
}

async fn measured(
    s: &Settings,
    args: &OverloadArgs,
    worker: &mut Worker,
    seen: &Arc<Mutex<Seen>>,
    backlog: Made,
) -> anyhow::Result<()> {
    let capacity = match args.capacity {
        Some(c) => c,
        None => {
            let total = backlog.inputs() as f64;
            let done = wait_for(
                worker,
                seen,
                Duration::from_secs(600),
                "the backlog read",
                |x| x.read >= total,
            )
            .await?;
            let first = snapshot(seen).first_read.unwrap_or(done);
            let took = (done - first).as_secs_f64().max(1e-3);
            let c = total / took;
            println!(
                "  capacity:     {total:.0} inputs read in {took:.1} s = {c:.0} inputs/s (backlog, first input read → last, /metrics every 250 ms)"
            );
            c
        }
    };
    // Let the backlog's last predictions expire, so the overload starts from a quiet worker.
    tokio::time::sleep(TIMEOUT).await;
    let before = snapshot(seen);
    let offered = capacity * args.factor;
    let rate = offered / 1.95; // predictions/s; each brings ~0.95 label
    let n = (rate * args.overload_time.as_secs_f64()) as u64;
    println!(
        "  overload:     offering {offered:.0} inputs/s ({}× capacity) for {} from {} publishing tasks …",
        args.factor,
        humantime::format_duration(args.overload_time),
        args.producers
    );
    let t0 = Instant::now();
    let (made, reports) = publish_live(s, args.seed, n, rate, args.producers).await?;
    let overload_end = Instant::now();
    let during = snapshot(seen);
    let published: u64 = reports.iter().map(|r| r.predictions + r.labels).sum();
    let failed: u64 = reports.iter().map(|r| r.failed).sum();
    if failed > 0 {
        bail!("{failed} overload records were not delivered");
    }
    let elapsed = (overload_end - t0).as_secs_f64();
    let processed = (during.read - before.read) / elapsed;
    println!(
        "  offered:      {published} inputs in {elapsed:.1} s = {:.0} inputs/s achieved ({:.2}× capacity)",
        published as f64 / elapsed,
        published as f64 / elapsed / capacity
    );
    println!(
        "  processed:    {processed:.0} inputs/s while overloaded ({:.0} inputs read)",
        during.read - before.read
    );
    let all = backlog.merged(made);
    let total = all.inputs() as f64;
    let caught_up = wait_for(worker, seen, Duration::from_secs(3_600), "catch-up", |x| {
        x.read >= total
    })
    .await?;
    println!(
        "  catch-up:     {:.1} s from the end of the overload until every input produced was read",
        (caught_up - overload_end).as_secs_f64()
    );
    // Every outcome counted: labels matched, predictions expired once their timeout passed.
    let expected = all.expected();
    let settled = wait_for(
        worker,
        seen,
        Duration::from_secs(300),
        "the accounting",
        |x| {
            expected
                .iter()
                .all(|(o, n)| outcome_total(&x.outcomes, o) >= *n)
        },
    )
    .await;
    // A few more samples: anything counted twice shows.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let end = snapshot(seen);
    let lines: Vec<String> = expected
        .iter()
        .map(|(o, n)| format!("{o} {} (reference {n})", outcome_total(&end.outcomes, o)))
        .collect();
    let exact = expected
        .iter()
        .all(|(o, n)| outcome_total(&end.outcomes, o) == *n);
    println!(
        "  accounting:   {}: {}",
        if exact { "exact" } else { "DIFFERS" },
        lines.join(", ")
    );
    println!(
        "  memory:       peak RSS (VmHWM) {:.0} MiB, largest sampled VmRSS {:.0} MiB; join.state.memory_budget {}",
        mib(end.memory.hwm),
        mib(end.max_rss),
        args.memory_budget
    );
    println!(
        "  lag:          max {:.0} records (kafka_consumergroup_lag of the inputs on /metrics), max {} on /readyz (lag.total)",
        end.max_lag, end.max_readyz_lag
    );
    settled?;
    if !exact {
        bail!("the worker's outcome counts differ from the generator's reference");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_matches_labels_and_expires_the_rest() {
        let m = Made {
            predictions: 100,
            labels: 95,
            duplicate_predictions: 2,
            duplicate_labels: 3,
        };
        assert_eq!(m.inputs(), 200);
        let e = m.expected();
        assert!(e.contains(&("matched", 95)));
        assert!(e.contains(&("expired_unlabeled", 5)));
        assert!(e.contains(&("dead_lettered", 0)));
        // Matched pairs count once for two inputs.
        let counted: u64 = e
            .iter()
            .map(|(o, n)| if *o == "matched" { 2 * n } else { *n })
            .sum();
        assert_eq!(counted, m.inputs());
    }
}
