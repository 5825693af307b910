//! The `driftwatch` binary against the real broker: `topics create` makes the configured
//! topics, and `check-config` then finds them (brokers reachable, topics present, inputs
//! co-partitioned).
//!
//! Here rather than beside the other command-line tests in `crates/cli/tests`: those run with
//! the unit tests, before `scripts/test` starts the broker, and a test that needs the broker
//! must run with it, or fail under CI (see `driftwatch_tests::broker`).

use std::process::{Command, Output};

use driftwatch_tests::{bootstrap, broker_available, driftwatch_binary, unique};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The binary with a clean environment (no configuration from the caller's shell) plus `env`.
fn driftwatch(env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(driftwatch_binary());
    for (k, _) in std::env::vars() {
        if k.starts_with("DRIFTWATCH") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd
}

#[test]
fn topics_and_check_config_against_a_real_broker() {
    if !broker_available() {
        return;
    }
    let suffix = unique("cli");
    let topic = |name: &str| format!("{suffix}-{name}");
    let env = [
        ("DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS", bootstrap()),
        ("DRIFTWATCH__TOPICS__PREDICTIONS", topic("predictions")),
        ("DRIFTWATCH__TOPICS__GROUND_TRUTH", topic("ground-truth")),
        ("DRIFTWATCH__TOPICS__MODEL_PARTIALS", topic("partials")),
        ("DRIFTWATCH__TOPICS__DEAD_LETTER", topic("dead")),
        ("DRIFTWATCH__TOPICS__DRIFT_EVENTS", topic("drift")),
        ("DRIFTWATCH__TOPICS__RETRAIN_EVENTS", topic("retrain")),
        ("DRIFTWATCH__TOPICS__MODEL_METRICS", topic("metrics")),
    ];
    let out = driftwatch(&env)
        .args(["topics", "create", "--partitions", "3"])
        .output()
        .expect("run driftwatch topics create");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&topic("predictions")), "{stdout}");
    let out = driftwatch(&env)
        .arg("check-config")
        .output()
        .expect("run driftwatch check-config");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("3 partitions each"), "{stdout}");
    assert!(
        stdout.contains("no recent keyed records to check"),
        "{stdout}"
    );
}
