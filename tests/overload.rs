//! Overload without loss, on the real broker: one `driftwatch run --role all` worker process
//! with its join state under a small memory budget (`join.state.dir`, 4 MiB) is offered a
//! burst of the mixed scenario (duplicates, late and orphan labels, no garbage) far faster
//! than it reads: the producer sends as fast as the broker takes records, the worker decodes,
//! joins and commits them exactly-once. Watched from outside the worker's process:
//! - the lag it reports rose above a floor, on `/metrics` (`kafka_consumergroup_lag` of the
//!   inputs) and on `/readyz` (`lag.total`): the burst did outrun it, and it said so;
//! - its resident memory, read from `/proc/<pid>/status` by this test, stayed under a bound
//!   derived from the configured budget (docs/OPERATIONS.md, *Capacity*);
//! - it caught up: lag 0 on both endpoints and every input read (a deadline only guards
//!   against a hang);
//! - its committed partials equal the scenario's offline reference exactly, and the
//!   dead-letter topic is empty: nothing was lost, counted twice, or dead-lettered for having
//!   waited in the backlog.
//!
//! The figures of a minutes-long overload at twice a release worker's capacity come from
//! `driftwatch bench overload` (BENCHMARKS.md); this test asserts what must hold at any scale.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use driftwatch_tests::monitor_outputs::{create_topics_of, MONITOR_TOML};
use driftwatch_tests::outcomes::{assert_reference, dead_letter_origins, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{produce_records, Scenario};
use driftwatch_tests::worker::Worker;
use driftwatch_tests::{settings, unique};
use driftwatch_worker::settings::Settings;

const PARTITIONS: i32 = 4;
const PREDICTIONS: usize = 100_000;
/// `join.state.memory_budget` of the worker.
const BUDGET_MIB: u64 = 4;
/// What the worker's resident memory may reach besides the budget (docs/OPERATIONS.md,
/// *Capacity*): per join partition the local store's cache (4 MiB), memtables (up to 16 MiB)
/// and entries gathered for its next run (up to 16 MiB); librdkafka's pre-fetch and producer
/// queue, sized from the budget (`F` each, at least 4 MiB), plus one fetch response
/// (`fetch.max.bytes`, 50 MiB); and a process allowance for the binary and both stages (about
/// 100 MB for a release build; this is a debug build). A worker that held its backlog or its
/// join state in memory without bound would fail it: the scenario's records alone are about
/// 40 MB, their join entries would not be.
const PER_PARTITION_MIB: u64 = 36;
const CLIENT_BUFFERS_MIB: u64 = 2 * 4 + 50;
const PROCESS_MIB: u64 = 150;
/// The lag the burst must have caused, records.
const LAG_FLOOR: f64 = 10_000.0;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// The sum of every sample of `series` whose line contains `label`.
fn sum(body: &str, series: &str, label: &str) -> f64 {
    body.lines()
        .filter(|l| l.starts_with(&format!("{series}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// `VmRSS` of `pid` in bytes, from the kernel.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What the sampler saw: the largest lag on each endpoint and the largest resident set, and
/// the latest lag and inputs read.
#[derive(Debug, Default, Clone)]
struct Seen {
    max_metrics_lag: f64,
    max_readyz_lag: i64,
    max_rss: u64,
    metrics_lag: Option<f64>,
    readyz_lag: Option<i64>,
    read: f64,
}

/// Samples the worker every 100 ms until `stop`.
fn sampler(
    pid: u32,
    port: u16,
    s: &Settings,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let inputs = [
        format!("topic=\"{}\"", s.topics.predictions),
        format!("topic=\"{}\"", s.topics.ground_truth),
    ];
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let memory = rss(pid);
            let metrics = http_get(port, "/metrics");
            let readyz = http_get(port, "/readyz");
            let mut x = seen.lock().expect("sampler state");
            if let Some(m) = memory {
                x.max_rss = x.max_rss.max(m);
            }
            if let Some((200, body)) = metrics {
                // Lag is exported once the worker saw its partitions' offsets.
                if body.contains("kafka_consumergroup_lag{") {
                    let lag: f64 = inputs
                        .iter()
                        .map(|t| sum(&body, "kafka_consumergroup_lag", t))
                        .sum();
                    x.max_metrics_lag = x.max_metrics_lag.max(lag);
                    x.metrics_lag = Some(lag);
                }
                x.read = inputs
                    .iter()
                    .map(|t| sum(&body, "driftwatch_events_in_total", t))
                    .sum();
            }
            if let Some(lag) = readyz
                .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
                .and_then(|v| v["lag"]["total"].as_i64())
            {
                x.max_readyz_lag = x.max_readyz_lag.max(lag);
                x.readyz_lag = Some(lag);
            }
            drop(x);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

fn snapshot(seen: &Arc<Mutex<Seen>>) -> Seen {
    seen.lock().expect("sampler state").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_worker_bounds_memory_reports_lag_catches_up_and_loses_nothing() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, PARTITIONS).await;
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(&config, MONITOR_TOML).expect("worker configuration file");
    let setup = (s, config);
    let s = &setup.0;

    let mut scenario =
        Scenario::generate(41, PREDICTIONS, driftwatch_tests::now_ms() - 4 * 3_600_000);
    // No garbage: every dead letter of this run would be one the overload caused.
    scenario.records.retain(|r| {
        !["garbage-", "bad-", "oversized-"]
            .iter()
            .any(|p| r.key.starts_with(p))
    });
    let reference = Outcomes::reference(&scenario);
    let inputs = scenario.inputs() as f64;

    let port = free_port();
    let state = std::env::temp_dir().join(unique("overload-state"));
    let worker = Worker::start_with(
        &setup,
        "overloaded",
        None,
        None,
        &[
            ("DRIFTWATCH__HTTP__ENABLED", "true".into()),
            ("DRIFTWATCH__HTTP__BIND", format!("127.0.0.1:{port}")),
            ("DRIFTWATCH__JOIN__STATE__DIR", state.display().to_string()),
            (
                "DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET",
                format!("{BUDGET_MIB}MiB"),
            ),
        ],
    );
    let logs = vec![worker.log.clone()];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(http_get(port, "/readyz"), Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "the worker never became ready; log {}",
            worker.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(worker.child.id(), port, s, seen.clone(), stop.clone());
    // The burst: every record as fast as the producer goes.
    produce_records(s, &scenario.records).await;

    // Caught up: every input read, and no lag left on either endpoint. The deadline only
    // guards against a hang.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let x = snapshot(&seen);
        if x.read >= inputs && x.metrics_lag == Some(0.0) && x.readyz_lag == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not catch up: {x:?} ({inputs} inputs); log {}",
            worker.log.display()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut reader = PartialsReader::new(s, PARTITIONS);
    reader.read_until(reference.total(), Duration::from_secs(120));
    stop.store(true, Ordering::Relaxed);
    sampling.join().expect("sampler");
    let x = snapshot(&seen);
    eprintln!(
        "overload: max lag {} on /metrics, {} on /readyz; max RSS {} MiB",
        x.max_metrics_lag,
        x.max_readyz_lag,
        x.max_rss / (1024 * 1024)
    );
    assert!(
        x.max_metrics_lag >= LAG_FLOOR,
        "the burst never put the worker {LAG_FLOOR} records behind on /metrics: {x:?}"
    );
    assert!(
        x.max_readyz_lag as f64 >= LAG_FLOOR,
        "the burst never put the worker {LAG_FLOOR} records behind on /readyz: {x:?}"
    );
    let bound =
        (BUDGET_MIB + PARTITIONS as u64 * PER_PARTITION_MIB + CLIENT_BUFFERS_MIB + PROCESS_MIB)
            * 1024
            * 1024;
    assert!(x.max_rss > 0, "no resident set was read from /proc");
    assert!(
        x.max_rss <= bound,
        "resident set {} MiB above the bound {} MiB derived from the {BUDGET_MIB} MiB budget",
        x.max_rss / (1024 * 1024),
        bound / (1024 * 1024)
    );
    assert_reference(&reader.seen, &reference, &logs);
    let dead = dead_letter_origins(s);
    assert!(dead.is_empty(), "dead letters under overload: {dead:?}");
    let status = worker.terminate();
    assert!(status.success(), "worker exit {status}");
    let _ = std::fs::remove_dir_all(&state);
}
