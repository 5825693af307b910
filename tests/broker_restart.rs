//! A broker restart in the middle of the traffic: both stages (exactly-once) reconnect by
//! themselves; the join's own accounting and the partials it committed equal the offline
//! reference exactly (transactions that fail while the broker is away are aborted and their work
//! is done again from the changelog), and the monitor's whole-run metrics count exactly those
//! partials, with no drift or retrain event twice and the drifting model's events present.
//!
//! Restarts the test broker of `scripts/kafka` (same ports, same storage), so it lives in its own
//! test binary: nothing else runs against the broker meanwhile.

use std::process::Command;
use std::time::Duration;

use driftwatch_tests::scenario::{counters_by_model, Scenario};
use driftwatch_tests::stages::{run_disrupted, scenario_settings};

/// Runs `scripts/kafka <cmd>` on the test broker; whether it succeeded.
fn kafka(cmd: &str) -> bool {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka");
    Command::new("bash")
        .arg(script)
        .arg(cmd)
        .status()
        .expect("scripts/kafka")
        .success()
}

/// Stops the broker and starts it again on the same ports and storage.
fn restart_broker() {
    assert!(kafka("stop"), "scripts/kafka stop failed");
    std::thread::sleep(Duration::from_secs(3));
    // The script says why a start failed (its output goes to this test's stderr); one more
    // try covers a port still held by a closing socket.
    if !kafka("start") {
        eprintln!("the broker did not come back: starting it once more");
        std::thread::sleep(Duration::from_secs(5));
        assert!(kafka("start"), "scripts/kafka start failed twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_and_duplicates_nothing() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let s = scenario_settings(4).await;
    let now = driftwatch_tests::now_ms();
    let scenario = Scenario::generate(11, 40_000, now - 2 * 3_600_000);
    let (stats, _) = run_disrupted(&s, &scenario, 4, restart_broker).await;
    assert_eq!(stats.dropped_on_revoke, 0, "a rebalance dropped state");
    let by_model = counters_by_model(std::slice::from_ref(&stats));
    assert_eq!(by_model, scenario.expected);
}
