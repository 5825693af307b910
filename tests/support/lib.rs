//! Shared helpers of the integration tests in `tests/`.
//!
//! The tests run against a real Apache Kafka broker. `scripts/test` starts one with
//! `scripts/kafka start` and exports its address as `DRIFTWATCH_TEST_BOOTSTRAP`; when a test is
//! run by hand, the address is read from `.kafka/bootstrap` of a broker started the same way.
//! [`broker`] holds the one rule for that, and for what a test does without a broker: fail
//! under CI, skip loudly elsewhere.

pub mod broker;
pub mod monitor_outputs;
pub mod outcomes;
pub mod registry_records;
pub mod registry_stub;
pub mod scenario;
pub mod schema_registry;
pub mod stages;
pub mod worker;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use driftwatch_worker::clients::{create_topics, TopicSpec};
use driftwatch_worker::settings::KafkaSettings;

/// The memory budget of the join's local state store the tests run with, from
/// `DRIFTWATCH_TEST_STATE_BUDGET` (e.g. `1MiB`): with it, every test that builds its settings
/// through [`with_state_from_env`] (the scenario settings, the pipeline, the chaos workers)
/// runs its join with `join.state.dir` set, so the accounting tests check the store too.
pub fn state_budget_from_env() -> Option<String> {
    std::env::var("DRIFTWATCH_TEST_STATE_BUDGET")
        .ok()
        .filter(|b| !b.trim().is_empty())
}

/// Turns the join's local state store on in `s`, under `budget`, in a folder no other test
/// or worker uses.
pub fn with_state(s: &mut driftwatch_worker::settings::Settings, budget: &str) {
    s.join.state.dir = Some(std::env::temp_dir().join(unique("driftwatch-state")));
    s.join.state.memory_budget = Some(budget.parse().expect("a size such as 1MiB"));
}

/// [`with_state`] under the budget of [`state_budget_from_env`], when it is set.
pub fn with_state_from_env(s: &mut driftwatch_worker::settings::Settings) {
    if let Some(budget) = state_budget_from_env() {
        with_state(s, &budget);
    }
}

/// Bootstrap address of the test broker ([`broker::test_broker`]).
///
/// # Panics
/// When there is no broker: the message says how to start one.
pub fn bootstrap() -> String {
    broker::bootstrap_or_panic()
}

/// Sends the workers' logs to the test output (shown for failing tests); `DRIFTWATCH_LOG`
/// sets the filter (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DRIFTWATCH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// Settings pointing at the test broker.
pub fn settings() -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: bootstrap(),
        ..KafkaSettings::default()
    }
}

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Whether the broker of `scripts/kafka` is there, by the same rule as [`bootstrap`]. Without
/// one, fails the test under CI and otherwise says loudly that it is skipped
/// ([`broker::require_broker`]).
pub fn broker_available() -> bool {
    broker::require_broker()
}

/// The wall clock in epoch milliseconds (scenarios are placed relative to it).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Creates `name` with `partitions` partitions on the test broker.
pub async fn create_topic(name: &str, partitions: i32) {
    create_topics(
        &settings(),
        &[TopicSpec {
            name: name.to_string(),
            partitions,
            configs: vec![],
        }],
    )
    .await
    .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
}

/// The partition the Java client's default partitioner picks for `key`.
/// (driftwatch's one implementation, checked against Kafka's own test vectors in the core).
pub fn java_partition(key: &[u8], partitions: i32) -> i32 {
    driftwatch_core::join::routing::murmur2_partition(key, partitions)
}

/// The `driftwatch` binary of this build: built with the same cargo, profile and target
/// directory as this test (a no-op when it is up to date), then found next to `deps/`.
pub fn driftwatch_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--quiet",
        "-p",
        "driftwatch-cli",
        "--bin",
        "driftwatch",
        // Inert unless a test sets DRIFTWATCH_FAULT (driftwatch_worker::fault).
        "--features",
        "fault-points",
    ]);
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
        None => {}
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p driftwatch-cli failed");
    let bin = profile_dir.join(format!("driftwatch{}", std::env::consts::EXE_SUFFIX));
    assert!(bin.exists(), "{} not found after the build", bin.display());
    bin
}

/// A child process killed (and reaped) when dropped, so a failing test leaves no process behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
