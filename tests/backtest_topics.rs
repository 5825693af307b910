//! `driftwatch backtest` reading its history from topics of the real broker (`topic:NAME`):
//! `driftwatch generate` publishes the drift scenario to 4-partition topics, and writes the
//! same history (same seed) to JSON lines files; the report from the topics equals the report
//! from the files (but for the garbage records only the topics hold), whole and for a time
//! range.

use std::path::Path;
use std::process::{Command, Output};

use driftwatch_tests::{bootstrap, broker_available, driftwatch_binary, unique};
use serde_json::Value;

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

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

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn generate(env: &[(&str, String)], extra: &[&str]) {
    ok(driftwatch(env)
        .args(["generate", "--scenario", "drift", "--rate", "1"])
        .args(["--time-scale", "0", "--duration", "12h"])
        .args(["--start-ms", &START_MS.to_string()])
        .args(extra)
        .output()
        .expect("run driftwatch generate"));
}

fn report(env: &[(&str, String)], predictions: &str, labels: &str, extra: &[&str]) -> Value {
    let out = ok(driftwatch(env)
        .args(["backtest", "--predictions", predictions])
        .args(["--ground-truth", labels, "--format", "json"])
        .args(["--fixed-interval", "6h"])
        .args(extra)
        .output()
        .expect("run driftwatch backtest"));
    serde_json::from_slice(&out.stdout).expect("a JSON report")
}

#[test]
fn a_history_read_from_topics_gives_the_report_of_the_same_history_in_files() {
    if !broker_available() {
        return;
    }
    let suffix = unique("backtest");
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
    ok(driftwatch(&env)
        .args(["topics", "create", "--partitions", "4"])
        .output()
        .expect("run driftwatch topics create"));
    generate(&env, &[]);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(&suffix);
    generate(&env, &["--output-dir", dir.to_str().expect("utf-8 path")]);
    let files = (
        dir.join("predictions.jsonl"),
        dir.join("ground-truth.jsonl"),
    );
    let (p, l) = (
        files.0.to_str().expect("utf-8 path"),
        files.1.to_str().expect("utf-8 path"),
    );
    let from_files = report(&env, p, l, &[]);
    let (tp, tl) = (
        format!("topic:{}", topic("predictions")),
        format!("topic:{}", topic("ground-truth")),
    );
    let from_topics = report(&env, &tp, &tl, &[]);
    let fraud = from_files["models"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["model_id"] == "fraud"))
        .expect("the drifting model in the report");
    let configured = fraud["policies"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "configured"))
        .expect("the configured policy");
    assert!(
        !configured["retrains"]
            .as_array()
            .expect("retrains")
            .is_empty(),
        "the drift is retrained: {configured}"
    );
    // The topics also hold the generator's garbage records (one in a thousand per input),
    // which JSON lines files cannot: counted as rejected, as the join counts them.
    let mut from_topics = from_topics;
    let garbage = from_topics["rejected"].as_u64().expect("rejected");
    assert!((40..200).contains(&garbage), "{garbage} rejected");
    assert_eq!(from_files["rejected"], 0);
    from_topics["rejected"] = 0.into();
    assert_eq!(from_topics, from_files);

    // A time range reads the same part of either source.
    let range = [
        "--from",
        "2026-01-01T03:00:00Z",
        "--to",
        "2026-01-01T09:00:00Z",
    ];
    let (mut from_topics, from_files) =
        (report(&env, &tp, &tl, &range), report(&env, p, l, &range));
    from_topics["rejected"] = 0.into();
    assert_eq!(from_topics, from_files);

    // A topic that does not exist is a clear error.
    let out = driftwatch(&env)
        .args(["backtest", "--predictions", &format!("topic:{suffix}-none")])
        .args(["--ground-truth", l])
        .output()
        .expect("run driftwatch backtest");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no such topic"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
