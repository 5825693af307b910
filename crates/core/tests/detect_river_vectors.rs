//! The detectors against River 0.26.1, observation for observation.
//!
//! `tests/fixtures/river/` is written by `scripts/fixtures/river_drift_vectors.py`: the fixed-seed
//! streams of River's own tests and the indices River's detectors flag on them (drifts and
//! warnings). Every case there is replayed through our detector built from the same parameters,
//! and the flagged indices must be identical.

#![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::path::PathBuf;

use driftwatch_core::detect::{ChangeDetector, DetectorConfig};
use serde::Deserialize;

#[derive(Deserialize)]
struct Streams {
    streams: BTreeMap<String, Vec<i64>>,
}

#[derive(Deserialize)]
struct Detections {
    meta: Meta,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Meta {
    river: String,
}

#[derive(Deserialize, Clone)]
struct Case {
    id: String,
    detector: String,
    params: serde_json::Map<String, serde_json::Value>,
    stream: String,
    drifts: Vec<usize>,
    warnings: Vec<usize>,
    documented_drifts: Option<Vec<usize>>,
}

#[allow(
    clippy::disallowed_methods,
    reason = "reference vectors are files written by another tool; the core under test reads none"
)]
fn fixture<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/river")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run scripts/fixtures/river_drift_vectors.py",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

struct Fixtures {
    streams: BTreeMap<String, Vec<i64>>,
    cases: Vec<Case>,
}

fn load() -> Fixtures {
    let streams: Streams = fixture("streams.json");
    let detections: Detections = fixture("detections.json");
    assert_eq!(
        detections.meta.river, "0.26.1",
        "fixtures not made by River 0.26.1"
    );
    Fixtures {
        streams: streams.streams,
        cases: detections.cases,
    }
}

/// Runs one case through our detector; returns (drift indices, warning indices).
fn replay(fx: &Fixtures, case: &Case) -> (Vec<usize>, Vec<usize>) {
    let mut config = case.params.clone();
    config.insert("kind".into(), case.detector.clone().into());
    let config: DetectorConfig = serde_json::from_value(config.into())
        .unwrap_or_else(|e| panic!("{}: params do not map onto our config: {e}", case.id));
    let mut detector = config.build().unwrap();
    let stream = &fx.streams[&case.stream];
    let (mut drifts, mut warnings) = (Vec::new(), Vec::new());
    for (i, &x) in stream.iter().enumerate() {
        let signal = detector.update(x as f64);
        if signal.drift {
            drifts.push(i);
        }
        if signal.warning {
            warnings.push(i);
        }
    }
    (drifts, warnings)
}

/// Checks every fixture case of one detector; returns how many were checked.
fn check_detector(detector: &str) -> usize {
    let fx = load();
    let cases: Vec<Case> = fx
        .cases
        .iter()
        .filter(|c| c.detector == detector)
        .cloned()
        .collect();
    assert!(!cases.is_empty(), "no fixture case for {detector}");
    for case in &cases {
        let (drifts, warnings) = replay(&fx, case);
        assert_eq!(
            drifts, case.drifts,
            "{}: drift indices differ from River",
            case.id
        );
        assert_eq!(
            warnings, case.warnings,
            "{}: warning indices differ from River",
            case.id
        );
    }
    cases.len()
}

#[test]
fn detect_adwin_matches_river() {
    assert!(check_detector("adwin") >= 2);
}

#[test]
fn detect_ddm_matches_river() {
    check_detector("ddm");
}

#[test]
fn detect_eddm_matches_river() {
    check_detector("eddm");
}

#[test]
fn detect_hddm_a_matches_river() {
    check_detector("hddm_a");
}

#[test]
fn detect_hddm_w_matches_river() {
    check_detector("hddm_w");
}

#[test]
fn detect_page_hinkley_matches_river() {
    check_detector("page_hinkley");
}

/// The fixtures hold what River's test suite documents, so a regenerated fixture from another
/// River cannot silently move the goalposts.
#[test]
fn detect_fixtures_hold_rivers_documented_indices() {
    let fx = load();
    let documented: &[(&str, &[usize])] = &[
        ("adwin_s1", &[1023]),
        ("adwin_regression", &[1023, 2015, 3007]),
        ("ddm_s2", &[1049]),
        ("eddm_s2", &[1059]),
        ("hddm_a_s2", &[1047]),
        ("hddm_a_s3_two_sided", &[531, 1015, 1545]),
        ("hddm_w_s2", &[1018]),
        ("hddm_w_s3_two_sided", &[507, 1032, 1508]),
        ("page_hinkley_s3_up", &[588, 1681]),
        ("page_hinkley_s3_down", &[1172]),
        ("page_hinkley_s3_both", &[588, 1097, 1585]),
    ];
    for (id, expected) in documented {
        let case = fx
            .cases
            .iter()
            .find(|c| c.id == *id)
            .unwrap_or_else(|| panic!("fixture case {id} missing"));
        assert_eq!(case.drifts, *expected, "{id}");
        assert_eq!(case.documented_drifts.as_deref(), Some(*expected), "{id}");
    }
    for (name, len) in [
        ("s1", 2000),
        ("s2", 2000),
        ("s3", 2000),
        ("adwin_regression", 4000),
    ] {
        assert_eq!(fx.streams[name].len(), len, "{name}");
    }
}
