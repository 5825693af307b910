//! `driftwatch demo` in a short mode: the drifting model gets drift and retrain events, the
//! stable one none, and the run ends by itself with exit code 0. Its standard output carries
//! the console's URL and no log line: the logs are in the file it names.
//!
//! The demo runs on librdkafka's embedded mock cluster: this checks the demo, not Kafka (the
//! integration tests in the repository's `tests/` do that against a real broker).

use assert_cmd::Command;

#[test]
fn short_demo_flags_the_drifting_model_only() {
    let out = Command::cargo_bin("driftwatch")
        .expect("binary")
        .args([
            "demo",
            "--traffic-time",
            "15s",
            "--predictions",
            "16000",
            "--quiet",
            "--console-bind",
            "127.0.0.1:0",
        ])
        .env("DRIFTWATCH_LOG", "info")
        .timeout(std::time::Duration::from_secs(150))
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{stderr}",
        out.status
    );
    let drift: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("⚑ drift event"))
        .collect();
    let retrain: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("↻ retrain event"))
        .collect();
    assert!(
        drift
            .iter()
            .any(|l| l.contains("fraud") && l.contains("→ DRIFT")),
        "no DRIFT event for the drifting model:\n{stdout}"
    );
    assert_eq!(
        retrain.iter().filter(|l| l.contains("fraud")).count(),
        1,
        "exactly one retrain event for the drifting model:\n{stdout}"
    );
    assert!(
        !drift
            .iter()
            .chain(retrain.iter())
            .any(|l| l.contains("churn")),
        "the stable model must stay quiet:\n{stdout}"
    );
    assert!(stdout.contains("summary after"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("console: http://127.0.0.1:")),
        "{stdout}"
    );
    for level in [" INFO ", " WARN ", " ERROR "] {
        assert!(!stdout.contains(level), "a log line on stdout:\n{stdout}");
    }
    let log = stdout
        .lines()
        .find_map(|l| l.strip_prefix("logs:"))
        .and_then(|l| l.trim().split(" (").next())
        .unwrap_or_else(|| panic!("no log file named:\n{stdout}"));
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(text.contains("drift event"), "{log}:\n{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in {log}");
    let _ = std::fs::remove_file(log);
}
