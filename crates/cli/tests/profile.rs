//! `driftwatch profile` on real files: CSV and JSON lines give the same reference, its
//! signature holds what the rows hold, and bad input is a clear error.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use assert_cmd::Command;
use driftwatch_codec::from_json;
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::ModelReference;

fn rows() -> Vec<(f64, &'static str, &'static str)> {
    (0..500)
        .map(|i| {
            let x = f64::from(i % 100) / 10.0;
            let c = ["red", "green", "blue"][i as usize % 3];
            let label = if i % 4 == 0 { "yes" } else { "no" };
            (x, c, label)
        })
        .collect()
}

fn profile(dir: &std::path::Path, input: &str) -> ModelReference {
    let out = dir.join(format!("{input}.ref.json"));
    let assert = Command::cargo_bin("driftwatch")
        .unwrap()
        .args([
            "profile",
            "--model",
            "m",
            "--version",
            "v1",
            "--label-column",
            "label",
            "--ignore",
            "id",
        ])
        .arg("--input")
        .arg(dir.join(input))
        .arg("--output")
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&assert.get_output().stdout).to_string();
    assert!(stdout.contains("500 rows"), "{stdout}");
    from_json(&std::fs::read_to_string(&out).unwrap()).unwrap()
}

#[test]
fn csv_and_jsonl_profiles_hold_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,x,colour,label\n");
    let mut jsonl = String::new();
    for (i, (x, c, l)) in rows().into_iter().enumerate() {
        // Every 50th x is missing.
        let xs = if i % 50 == 0 {
            String::new()
        } else {
            x.to_string()
        };
        csv.push_str(&format!("{i},{xs},{c},{l}\n"));
        let xj = if i % 50 == 0 {
            "null".to_string()
        } else {
            x.to_string()
        };
        jsonl.push_str(&format!(
            "{{\"id\":{i},\"x\":{xj},\"colour\":\"{c}\",\"label\":\"{l}\"}}\n"
        ));
    }
    std::fs::write(dir.path().join("train.csv"), csv).unwrap();
    std::fs::write(dir.path().join("train.jsonl"), jsonl).unwrap();

    for input in ["train.csv", "train.jsonl"] {
        let r = profile(dir.path(), input);
        assert_eq!(
            (r.model_id.as_str(), r.model_version.as_str(), r.rows),
            ("m", "v1", 500)
        );
        assert_eq!(r.key(), "m/v1");
        let mut interner = FeatureInterner::new();
        let s = SignatureSummary::from_bytes(&r.signature, &mut interner).unwrap();
        let x = s.feature_by_name(&interner, "x").expect("x summarized");
        assert_eq!(x.missing(), 10, "{input}");
        let mean = x.numeric().and_then(|n| n.mean()).unwrap();
        let expected: f64 = rows()
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 50 != 0)
            .map(|(_, r)| r.0)
            .sum::<f64>()
            / 490.0;
        assert!(
            (mean - expected).abs() < 1e-9,
            "{input}: mean {mean} vs {expected}"
        );
        let colour = s
            .feature_by_name(&interner, "colour")
            .and_then(|f| f.categorical())
            .expect("colour");
        assert_eq!(colour.estimate("red"), 167, "{input}");
        assert!(
            s.feature_by_name(&interner, "id").is_none(),
            "{input}: ignored column"
        );
        assert!(
            s.feature_by_name(&interner, "label").is_none(),
            "{input}: the label is no feature"
        );
        assert_eq!(
            s.predicted_label().estimate("yes"),
            125,
            "{input}: labels as the output"
        );
    }
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ragged.csv"), "a,b\n1,2\n3\n").unwrap();
    let out = Command::cargo_bin("driftwatch")
        .unwrap()
        .args([
            "profile",
            "--model",
            "m",
            "--version",
            "v1",
            "--output",
            "/dev/null",
            "--input",
        ])
        .arg(dir.path().join("ragged.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("header has 2 columns"),
        "{err}"
    );

    let out = Command::cargo_bin("driftwatch")
        .unwrap()
        .args([
            "profile",
            "--model",
            "m",
            "--version",
            "v1",
            "--input",
            "/nonexistent/train.csv",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/train.csv"));
}

#[test]
fn avro_container_files_profile_like_the_other_formats() {
    use apache_avro::types::{Record, Value};
    use apache_avro::{Schema, Writer};
    let dir = tempfile::tempdir().unwrap();
    let schema = Schema::parse_str(
        r#"{"type": "record", "name": "Row", "fields": [
            {"name": "x", "type": ["null", "double"]},
            {"name": "colour", "type": "string"},
            {"name": "n", "type": "long"},
            {"name": "label", "type": "string"}
        ]}"#,
    )
    .unwrap();
    let mut writer = Writer::new(&schema, Vec::new()).unwrap();
    for (i, (x, c, l)) in rows().into_iter().enumerate() {
        let mut r = Record::new(&schema).unwrap();
        let x = if i % 50 == 0 {
            Value::Union(0, Box::new(Value::Null))
        } else {
            Value::Union(1, Box::new(Value::Double(x)))
        };
        r.put("x", x);
        r.put("colour", c);
        r.put("n", i as i64);
        r.put("label", l);
        writer.append_value(r).unwrap();
    }
    std::fs::write(dir.path().join("train.avro"), writer.into_inner().unwrap()).unwrap();

    let r = profile(dir.path(), "train.avro");
    assert_eq!(r.rows, 500);
    let mut interner = FeatureInterner::new();
    let s = SignatureSummary::from_bytes(&r.signature, &mut interner).unwrap();
    let x = s.feature_by_name(&interner, "x").expect("x summarized");
    assert_eq!(x.missing(), 10);
    let n = s
        .feature_by_name(&interner, "n")
        .and_then(|f| f.numeric())
        .expect("n");
    assert_eq!(n.max(), Some(499.0));
    let colour = s
        .feature_by_name(&interner, "colour")
        .and_then(|f| f.categorical())
        .unwrap();
    assert_eq!(colour.estimate("blue"), 166);
    assert_eq!(s.predicted_label().estimate("yes"), 125);
}
