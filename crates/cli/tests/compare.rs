//! `driftwatch compare` on files written by other tools: numpy draws the rows and pyarrow and
//! Python's json module write them (scripts/compare-data.py), in every input format.
//!
//! Needs python3 with numpy and pyarrow (`scripts/test` installs them). Without them the tests
//! print why and pass, except under `CI=true`, where they fail.

#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output};
use std::sync::OnceLock;

use assert_cmd::Command;
use serde_json::Value;

/// Rows per file: enough that sampling noise stays far below the distance thresholds (a
/// 200-category column's Jensen–Shannon distance is ~0.06 at this size against 0.1).
const ROWS: &str = "20000";
const FORMATS: [&str; 4] = ["csv", "jsonl", "parquet", "avro"];
const COLUMNS: usize = 15;

/// The generated files' folder, made once per test run; `None` (after saying why) when Python
/// or its packages are missing outside CI.
fn data() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let probe = Process::new("python3")
            .args(["-c", "import numpy, pyarrow"])
            .output();
        let ok = probe.as_ref().is_ok_and(|o| o.status.success());
        if !ok {
            let why = match probe {
                Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                Err(e) => format!("python3: {e}"),
            };
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "python3 with numpy and pyarrow is required under CI (scripts/test installs \
                 them): {why}"
            );
            eprintln!("skipped: python3 with numpy and pyarrow not found: {why}");
            return None;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/compare-data.py");
        // Kept between runs, keyed by the script's text: the seeds are fixed, so the same
        // script writes the same rows.
        let mut key = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&std::fs::read(&script).unwrap(), &mut key);
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let done = tmp.join(format!(
            "compare-data-{ROWS}-{:016x}",
            std::hash::Hasher::finish(&key)
        ));
        if done.is_dir() {
            return Some(done);
        }
        let dir = tmp.join(format!("compare-data-partial-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // reference: seed 1; same: another sample of the same distributions; drift: shifted.
        for (name, seed, drift) in [
            ("ref", "1", false),
            ("same", "3", false),
            ("drift", "2", true),
        ] {
            let mut cmd = Process::new("python3");
            cmd.arg(&script).args(["--rows", ROWS, "--seed", seed]);
            if drift {
                cmd.arg("--drift");
            }
            for ext in FORMATS {
                cmd.arg("--out").arg(dir.join(format!("{name}.{ext}")));
            }
            let out = cmd.output().unwrap();
            assert!(
                out.status.success(),
                "compare-data.py: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // A concurrent run may have finished first: then its copy is as good as this one.
        if std::fs::rename(&dir, &done).is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Some(done)
    })
    .as_deref()
}

fn compare(args: &[&str]) -> Output {
    Command::cargo_bin("driftwatch")
        .unwrap()
        .arg("compare")
        .args(args)
        .output()
        .unwrap()
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

fn json(dir: &Path, reference: &str, current: &str, extra: &[&str]) -> Value {
    let (r, c) = (path(dir, reference), path(dir, current));
    let mut args = vec!["--reference", &r, "--current", &c, "--format", "json"];
    args.extend_from_slice(extra);
    let out = compare(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{reference} vs {current}: {stderr}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Names of the drifted features.
fn drifted(report: &Value) -> Vec<String> {
    report["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["drift"] == Value::Bool(true))
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn same_distribution_drifts_nowhere_in_any_format() {
    let Some(dir) = data() else { return };
    for ext in FORMATS {
        let r = json(dir, &format!("ref.{ext}"), &format!("same.{ext}"), &[]);
        assert_eq!(r["features"].as_array().unwrap().len(), COLUMNS, "{ext}");
        assert!(drifted(&r).is_empty(), "{ext}: {r}");
        assert_eq!(r["share_drifted"], 0.0);
        assert_eq!(r["dataset_drift"], false);
    }
    // Formats mix: a Parquet reference against a CSV current.
    let r = json(dir, "ref.parquet", "same.csv", &[]);
    assert!(drifted(&r).is_empty(), "{r}");
}

#[test]
fn shifted_numeric_and_categorical_columns_are_flagged() {
    let Some(dir) = data() else { return };
    for ext in FORMATS {
        let r = json(dir, &format!("ref.{ext}"), &format!("drift.{ext}"), &[]);
        assert_eq!(drifted(&r), ["n0", "c0"], "{ext}: {r}");
        let share = r["share_drifted"].as_f64().unwrap();
        assert!((share - 2.0 / 15.0).abs() < 1e-12, "{share}");
        assert_eq!(r["dataset_drift"], false);
    }
    // Restricted to the shifted columns: every one drifts, so the dataset does.
    let r = json(dir, "ref.csv", "drift.avro", &["--columns", "c0,n0"]);
    let names: Vec<&str> = r["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c0", "n0"]);
    assert_eq!(r["share_drifted"], 1.0);
    assert_eq!(r["dataset_drift"], true);
}

#[test]
fn json_schema_is_exact() {
    let Some(dir) = data() else { return };
    let (r, c) = (path(dir, "ref.parquet"), path(dir, "drift.jsonl"));
    let out = compare(&["--reference", &r, "--current", &c, "--format", "json"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("{\"features\":[{\"name\":\"n0\",\"kind\":\"numerical\",\"test\":"));
    assert!(text.trim_end().ends_with('}') && text.ends_with('\n'));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&String> = doc.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3);
    for k in ["features", "share_drifted", "dataset_drift"] {
        assert!(doc.get(k).is_some(), "{k}");
    }
    let field_order = [
        "\"name\":",
        "\"kind\":",
        "\"test\":",
        "\"statistic\":",
        "\"p_value\":",
        "\"threshold\":",
        "\"drift\":",
    ];
    for (f, raw) in doc["features"]
        .as_array()
        .unwrap()
        .iter()
        .zip(text.split("},{"))
    {
        let o = f.as_object().unwrap();
        assert_eq!(o.len(), 7, "{f}");
        let positions: Vec<usize> = field_order.iter().map(|k| raw.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{raw}");
        let name = o["name"].as_str().unwrap();
        let kind = if name.starts_with('n') {
            "numerical"
        } else {
            "categorical"
        };
        assert_eq!(o["kind"], kind, "{name}");
        assert!(!o["test"].as_str().unwrap().is_empty());
        assert!(o["statistic"].is_f64());
        assert!(o["p_value"].is_null() || o["p_value"].is_f64());
        assert!(o["threshold"].is_f64());
        assert!(o["drift"].is_boolean());
    }
    assert!(doc["share_drifted"].is_f64());
    assert!(doc["dataset_drift"].is_boolean());
}

#[test]
fn table_lists_every_column_and_the_verdict() {
    let Some(dir) = data() else { return };
    let (r, c) = (path(dir, "ref.csv"), path(dir, "drift.csv"));
    let out = compare(&["--reference", &r, "--current", &c]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("column")).unwrap();
    let stat = lines[header].find("statistic").unwrap() + "statistic".len();
    for (i, name) in (0..10)
        .map(|i| format!("n{i}"))
        .chain((0..5).map(|i| format!("c{i}")))
        .enumerate()
    {
        let line = lines[header + 1 + i];
        assert!(line.starts_with(&format!("{name} ")), "{line}");
        // Right-aligned numbers end under the header's end.
        assert!(line.as_bytes()[stat - 1].is_ascii_digit(), "{line}");
        assert_eq!(
            line.ends_with("DRIFT"),
            name == "n0" || name == "c0",
            "{line}"
        );
    }
    assert!(
        text.contains("2 of 15 columns drifted (13.3 %): no dataset drift"),
        "{text}"
    );
}

#[test]
fn html_page_is_self_contained_with_a_chart_per_column() {
    let Some(dir) = data() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let page = scratch.path().join("report.html");
    let (r, c) = (path(dir, "ref.parquet"), path(dir, "drift.parquet"));
    let out = compare(&[
        "--reference",
        &r,
        "--current",
        &c,
        "--format",
        "html",
        "--output",
        page.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the report goes to --output");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    for external in [
        "http://", "https://", "<script", "<link", "@import", "url(", "src=",
    ] {
        assert!(!html.contains(external), "{external} in the page");
    }
    assert_eq!(html.matches("<svg").count(), COLUMNS);
    assert_eq!(html.matches("</svg>").count(), COLUMNS);
    // Numeric columns as histograms (two outlines each), categorical ones as bars.
    assert_eq!(html.matches("<path ").count(), 2 * 10);
    for i in 0..5 {
        assert!(html.contains(&format!(">c{i}</a>")), "c{i} in the table");
    }
    assert_eq!(html.matches("<tr class=\"drift\">").count(), 2);
}

/// Runs a comparison that must fail; returns stderr after checking the exit code and that
/// nothing panicked.
fn failure(reference: &Path, current: &Path, extra: &[&str]) -> String {
    let (r, c) = (
        reference.to_string_lossy().into_owned(),
        current.to_string_lossy().into_owned(),
    );
    let mut args = vec!["--reference", &r, "--current", &c];
    args.extend_from_slice(extra);
    let out = compare(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.stdout.is_empty());
    stderr
}

/// `name` in a scratch folder holding `lines` of the generated `from` file, edited by `edit`
/// (line index, text) → new text.
fn edited(
    scratch: &Path,
    from: &Path,
    name: &str,
    edit: impl Fn(usize, &str) -> String,
) -> PathBuf {
    let text = std::fs::read_to_string(from).unwrap();
    let out: Vec<String> = text
        .lines()
        .take(500)
        .enumerate()
        .map(|(i, l)| edit(i, l))
        .collect();
    let p = scratch.join(name);
    std::fs::write(&p, out.join("\n") + "\n").unwrap();
    p
}

#[test]
fn bad_input_names_file_line_and_column() {
    let Some(dir) = data() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let s = scratch.path();
    let ref_csv = dir.join("ref.csv");

    // A row with a field too few (line 5 of the file: header + 4 rows).
    let ragged = edited(s, &ref_csv, "ragged.csv", |i, l| {
        if i == 4 {
            l.rsplit_once(',').unwrap().0.to_owned()
        } else {
            l.to_owned()
        }
    });
    let e = failure(&ref_csv, &ragged, &[]);
    assert!(e.contains(&format!("{}: line 5", ragged.display())), "{e}");
    assert!(
        e.contains("14 fields, the header has 15 columns") && e.contains("`c4`"),
        "{e}"
    );

    // Invalid JSON inside a value (line 7, column n3).
    let bad_json = edited(s, &dir.join("ref.jsonl"), "bad.jsonl", |i, l| {
        if i == 6 {
            let at = l.find("\"n3\":").unwrap() + 5;
            format!("{}tru{}", &l[..at], &l[at..])
        } else {
            l.to_owned()
        }
    });
    let e = failure(&dir.join("ref.jsonl"), &bad_json, &[]);
    assert!(
        e.contains(&format!(
            "{}: line 7, column `n3`: invalid JSON",
            bad_json.display()
        )),
        "{e}"
    );

    // A truncated Avro container file.
    let avro = std::fs::read(dir.join("ref.avro")).unwrap();
    let truncated = s.join("truncated.avro");
    std::fs::write(&truncated, &avro[..avro.len() * 2 / 3]).unwrap();
    let e = failure(&dir.join("ref.avro"), &truncated, &[]);
    assert!(
        e.contains(&format!("{}: record ", truncated.display())),
        "{e}"
    );
    assert!(e.contains("truncated or corrupt"), "{e}");

    // A truncated Parquet file (its footer gone).
    let pq = std::fs::read(dir.join("ref.parquet")).unwrap();
    let cut = s.join("cut.parquet");
    std::fs::write(&cut, &pq[..pq.len() / 2]).unwrap();
    let e = failure(&dir.join("ref.parquet"), &cut, &[]);
    assert!(
        e.contains(&format!("{}: not a Parquet file", cut.display())),
        "{e}"
    );

    // Empty files, and a header without rows.
    let empty = s.join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let e = failure(&empty, &ref_csv, &[]);
    assert!(
        e.contains(&format!("{}: the file is empty", empty.display())),
        "{e}"
    );
    let header_only = edited(s, &ref_csv, "header.csv", |_, l| l.to_owned());
    let header = std::fs::read_to_string(&header_only).unwrap();
    std::fs::write(&header_only, header.lines().next().unwrap()).unwrap();
    let e = failure(&ref_csv, &header_only, &[]);
    assert!(
        e.contains(&format!("{}: no rows", header_only.display())),
        "{e}"
    );

    // A column on one side only, and one named by --columns that a file lacks.
    let no_c4 = edited(s, &ref_csv, "no_c4.csv", |_, l| {
        l.rsplit_once(',').unwrap().0.to_owned()
    });
    let e = failure(&ref_csv, &no_c4, &[]);
    assert!(
        e.contains(&format!(
            "{}: column `c4` is not in the file",
            no_c4.display()
        )),
        "{e}"
    );
    let e = failure(&ref_csv, &no_c4, &["--columns", "n0,c4"]);
    assert!(
        e.contains(&format!("{}: column `c4`", no_c4.display())),
        "{e}"
    );

    // A numerical column whose current values are all text: no value of its kind to compare.
    let text_n2 = edited(s, &ref_csv, "text_n2.csv", |i, l| {
        if i == 0 {
            return l.to_owned();
        }
        let mut cells: Vec<String> = l.split(',').map(str::to_owned).collect();
        cells[2] = "\"high\"".to_owned();
        cells.join(",")
    });
    let e = failure(&ref_csv, &text_n2, &[]);
    assert!(
        e.contains(&format!("{}: line 2, column `n2`", text_n2.display())),
        "{e}"
    );
    assert!(e.contains("numerical"), "{e}");

    // An unknown extension.
    let e = failure(&ref_csv, &s.join("data.txt"), &[]);
    assert!(e.contains("data.txt") && e.contains("extension"), "{e}");
}

#[test]
fn a_few_strings_in_a_numeric_column_are_a_note_not_an_error() {
    let Some(dir) = data() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let ref_csv = dir.join("ref.csv");
    // Lines 10 and 20 carry text in n1: a data-quality finding, as in the monitor.
    let dirty = edited(scratch.path(), &ref_csv, "dirty.csv", |i, l| {
        if i == 9 || i == 19 {
            let mut cells: Vec<&str> = l.split(',').collect();
            cells[1] = "n/a";
            cells.join(",")
        } else {
            l.to_owned()
        }
    });
    let (r, c) = (
        ref_csv.to_string_lossy().into_owned(),
        dirty.to_string_lossy().into_owned(),
    );
    let out = compare(&["--reference", &r, "--current", &c, "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: column `n1` is numerical and holds 2 text values",
            dirty.display()
        )) && stderr.contains("line 10"),
        "{stderr}"
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["features"][1]["kind"], "numerical");
}
