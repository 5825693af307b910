//! `driftwatch backtest` on a history with a known drift point, written to JSON lines files by
//! `driftwatch generate` (the drift scenario: at the halfway point the model `fraud` falls from
//! 92 % to 70 % accuracy, `churn` stays stable), and the same history as Avro container files.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value;

const START_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const HOURS: i64 = 30;
const DRIFT_MS: i64 = START_MS + HOURS * 3_600_000 / 2;

fn driftwatch() -> Command {
    let mut cmd = Command::cargo_bin("driftwatch").unwrap();
    for (k, _) in std::env::vars() {
        if k.starts_with("DRIFTWATCH") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The generated history's folder, made once per test run.
fn history() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("backtest-history-{}", std::process::id()));
        driftwatch()
            .args([
                "generate",
                "--scenario",
                "drift",
                "--rate",
                "1",
                "--time-scale",
                "0",
            ])
            .args(["--duration", &format!("{HOURS}h")])
            .args(["--start-ms", &START_MS.to_string(), "--output-dir"])
            .arg(&dir)
            .assert()
            .success();
        dir
    })
}

fn backtest(p: &Path, l: &Path, extra: &[&str]) -> std::process::Output {
    driftwatch()
        .arg("backtest")
        .arg("--predictions")
        .arg(p)
        .arg("--ground-truth")
        .arg(l)
        .args(extra)
        .output()
        .unwrap()
}

fn json_report(p: &Path, l: &Path) -> Value {
    let out = backtest(p, l, &["--format", "json", "--fixed-interval", "1d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn policy<'a>(model: &'a Value, name: &str) -> &'a Value {
    model["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no policy {name} in {model}"))
}

fn check_drift_history(report: &Value) {
    let models = report["models"].as_array().unwrap();
    let fraud = models.iter().find(|m| m["model_id"] == "fraud").unwrap();
    let churn = models.iter().find(|m| m["model_id"] == "churn").unwrap();
    for m in [fraud, churn] {
        for p in m["policies"].as_array().unwrap() {
            for key in ["hours_below_slo", "accuracy_hours_lost", "cost"] {
                assert!(p[key].is_f64(), "{key} of {p}");
            }
            assert!(p["retrains"].is_array(), "{p}");
        }
    }
    let configured = policy(fraud, "configured");
    let retrains: Vec<i64> = configured["retrains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert!(!retrains.is_empty(), "{configured}");
    assert!(
        retrains[0] > DRIFT_MS && retrains[0] < DRIFT_MS + 3 * 3_600_000,
        "first retrain at {} ms after the drift point",
        retrains[0] - DRIFT_MS
    );
    let never = policy(fraud, "no-retrain");
    assert_eq!(never["retrains"].as_array().unwrap().len(), 0);
    let hours = |p: &Value| p["hours_below_slo"].as_f64().unwrap();
    assert!(
        hours(never) > hours(configured) + 5.0,
        "{never} vs {configured}"
    );
    assert!(hours(policy(fraud, "fixed-1d")) < hours(never));
    // The stable model: no retrain decided, nothing below the SLO for long.
    assert_eq!(
        policy(churn, "configured")["retrains"],
        serde_json::json!([])
    );
    assert!(hours(policy(churn, "no-retrain")) <= 1.0, "{churn}");
}

#[test]
fn the_configured_policy_retrains_after_the_drift_point_of_a_generated_history() {
    let dir = history();
    let report = json_report(
        &dir.join("predictions.jsonl"),
        &dir.join("ground-truth.jsonl"),
    );
    check_drift_history(&report);
}

#[test]
fn a_policy_file_is_compared_by_its_name_and_the_table_lists_every_policy() {
    let dir = history();
    let policy_file = Path::new(env!("CARGO_TARGET_TMPDIR")).join("never.toml");
    std::fs::write(&policy_file, "enabled = false\nretrain_cost = 3.0\n").unwrap();
    let out = backtest(
        &dir.join("predictions.jsonl"),
        &dir.join("ground-truth.jsonl"),
        &["--policy", policy_file.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "configured",
        "never",
        "no-retrain",
        "fixed-7d",
        "model fraud",
    ] {
        assert!(stdout.contains(name), "{name} in {stdout}");
    }
    let bad = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad.toml");
    std::fs::write(&bad, "cooldwn_ms = 1\n").unwrap();
    let out = backtest(
        &dir.join("predictions.jsonl"),
        &dir.join("ground-truth.jsonl"),
        &["--policy", bad.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml"));
}

#[test]
fn the_html_report_is_one_self_contained_page_with_a_chart_per_model() {
    let dir = history();
    let page = Path::new(env!("CARGO_TARGET_TMPDIR")).join("backtest.html");
    let out = backtest(
        &dir.join("predictions.jsonl"),
        &dir.join("ground-truth.jsonl"),
        &["--format", "html", "--output", page.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(html.matches("<svg").count(), 2, "one chart per model");
    assert!(html.contains("retrain at"), "retrain markers");
    assert!(html.contains("accuracy_drop DRIFT"), "drift events");
    for forbidden in ["http:", "https:", "<script", "<link", "src="] {
        assert!(!html.contains(forbidden), "{forbidden}");
    }
}

/// The JSON lines file `from` rewritten as an Avro container file of the record's current
/// schema.
fn to_container<T: driftwatch_codec::AvroRecord + driftwatch_codec::JsonRecord>(
    from: &Path,
    to: &Path,
) {
    use apache_avro::reader::datum::GenericDatumReader;
    let schema = T::KIND.schema().unwrap();
    let reader = GenericDatumReader::builder(schema).build().unwrap();
    let mut writer = apache_avro::Writer::new(schema, Vec::new()).unwrap();
    for line in std::fs::read_to_string(from).unwrap().lines() {
        let record: T = driftwatch_codec::from_json(line).unwrap();
        let datum = driftwatch_codec::to_avro(&record).unwrap();
        writer
            .append_value(reader.read_value(&mut &datum[..]).unwrap())
            .unwrap();
    }
    std::fs::write(to, writer.into_inner().unwrap()).unwrap();
}

#[test]
fn avro_container_files_give_the_same_report() {
    let dir = history();
    let (p, l) = (dir.join("predictions.avro"), dir.join("ground-truth.avro"));
    to_container::<driftwatch_core::Prediction>(&dir.join("predictions.jsonl"), &p);
    to_container::<driftwatch_core::GroundTruth>(&dir.join("ground-truth.jsonl"), &l);
    let from_avro = json_report(&p, &l);
    check_drift_history(&from_avro);
    let from_json = json_report(
        &dir.join("predictions.jsonl"),
        &dir.join("ground-truth.jsonl"),
    );
    assert_eq!(from_avro, from_json);
}
