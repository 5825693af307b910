//! Unit tests of the signature checks.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::{FeatureValue, Prediction};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MIN: i64 = 60_000;

/// Signature bytes of `n` predictions: `x` ~ N(mean, 1) as a sum of uniforms, `c` from
/// `cats`, `m` missing with probability `missing`, optional extra feature.
fn bucket(
    rng: &mut SmallRng,
    n: usize,
    mean: f64,
    cats: &[&str],
    missing: f64,
    extra: Option<&str>,
) -> Vec<u8> {
    let mut names = FeatureInterner::new();
    let mut sig = SignatureSummary::new();
    for _ in 0..n {
        let x = mean + (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
        let m = if rng.gen_bool(missing) {
            FeatureValue::Missing
        } else {
            FeatureValue::Number(rng.gen())
        };
        let mut features = vec![
            ("x".to_owned(), FeatureValue::Number(x)),
            (
                "c".to_owned(),
                FeatureValue::Category(cats[rng.gen_range(0..cats.len())].to_owned()),
            ),
            ("m".to_owned(), m),
        ];
        if let Some(e) = extra {
            features.push((e.to_owned(), FeatureValue::Number(1.0)));
        }
        let p = Prediction {
            request_id: "r".into(),
            model_id: "m".into(),
            model_version: "1".into(),
            timestamp: 0,
            features,
            predicted_label: Some(if rng.gen_bool(0.5) { "a" } else { "b" }.into()),
            predicted_value: None,
            scores: None,
            tags: vec![],
        };
        sig.update_prediction(&mut names, &p).unwrap();
    }
    sig.flush();
    sig.to_bytes(&names).unwrap()
}

fn drifted(js: &[Judgement], detector: &str, feature: &str) -> Option<bool> {
    js.iter()
        .find(|j| j.detector == detector && j.feature.as_deref() == Some(feature))
        .map(|j| j.level == Level::Drift)
}

fn drifting(js: &[Judgement]) -> Vec<(String, String)> {
    js.iter()
        .filter(|j| j.level == Level::Drift)
        .map(|j| (j.detector.clone(), j.feature.clone().unwrap_or_default()))
        .collect()
}

/// 60 minutes of reference, then `minutes` of current traffic made by `make`.
fn run(
    minutes: i64,
    make: &dyn Fn(&mut SmallRng) -> Vec<u8>,
    cfg: &FeatureDriftConfig,
) -> (SignatureTracker, Vec<Judgement>) {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut t = SignatureTracker::new(60 * MIN, 60 * MIN);
    for b in 0..60 {
        let bytes = bucket(&mut rng, 100, 0.0, &["a", "b", "c"], 0.05, None);
        t.ingest(&bytes, b * MIN, MIN).unwrap();
        assert!(t.judge(cfg).is_empty(), "judged while the window overlaps");
    }
    let mut last = Vec::new();
    for b in 60..60 + minutes {
        t.ingest(&make(&mut rng), b * MIN, MIN).unwrap();
        let js = t.judge(cfg);
        if !js.is_empty() {
            last = js;
        }
    }
    (t, last)
}

#[test]
fn stable_traffic_is_clean_and_a_shift_drifts_only_its_feature() {
    let cfg = FeatureDriftConfig::default();
    let (t, stable) = run(
        60,
        &|rng| bucket(rng, 100, 0.0, &["a", "b", "c"], 0.05, None),
        &cfg,
    );
    assert!(!stable.is_empty());
    assert!(drifting(&stable).is_empty(), "{:?}", drifting(&stable));
    assert_eq!(t.reference().unwrap().2, 6_000);
    // Every default check ran on `x` with the large-reference test.
    assert_eq!(drifted(&stable, "wasserstein_normed", "x"), Some(false));
    assert_eq!(drifted(&stable, "jensen_shannon", "c"), Some(false));
    assert_eq!(drifted(&stable, "jensen_shannon", PREDICTION), Some(false));
    assert_eq!(drifted(&stable, MISSING_RATE, "m"), Some(false));
    assert_eq!(drifted(&stable, UNSEEN_CATEGORIES, "c"), Some(false));
    assert_eq!(drifted(&stable, FEATURE_PRESENCE, "x"), Some(false));

    // A drift verdict stands once drifting verdicts have run for a whole window: the
    // first judgement (minute 120) plus 60 more.
    let (_, shifted) = run(
        121,
        &|rng| bucket(rng, 100, 1.0, &["a", "b", "c"], 0.05, None),
        &cfg,
    );
    assert_eq!(
        drifting(&shifted),
        vec![("wasserstein_normed".to_owned(), "x".to_owned())]
    );
}

#[test]
fn data_quality_checks_fire_on_their_problem() {
    let cfg = FeatureDriftConfig::default();
    let (_, js) = run(
        60,
        &|rng| bucket(rng, 100, 0.0, &["a", "b", "zz", "yy"], 0.5, Some("new")),
        &cfg,
    );
    let d = drifting(&js);
    assert!(d.contains(&(MISSING_RATE.into(), "m".into())), "{d:?}");
    assert!(d.contains(&(UNSEEN_CATEGORIES.into(), "c".into())), "{d:?}");
    assert!(
        d.contains(&(FEATURE_PRESENCE.into(), "new".into())),
        "{d:?}"
    );
    assert_eq!(drifted(&js, MISSING_RATE, "x"), Some(false));

    let off = FeatureDriftConfig {
        data_quality: false,
        prediction_drift: false,
        ignore: vec!["c".into()],
        ..FeatureDriftConfig::default()
    };
    let (_, js) = run(
        60,
        &|rng| bucket(rng, 100, 0.0, &["zz"], 0.5, Some("new")),
        &off,
    );
    assert!(js
        .iter()
        .all(|j| j.feature.as_deref() == Some("x") || j.feature.as_deref() == Some("m")));
    assert!(js.iter().all(|j| j.detector == "wasserstein_normed"));
}

#[test]
fn judges_once_per_window_end_and_evicts_old_buckets() {
    let cfg = FeatureDriftConfig::default();
    let (mut t, js) = run(90, &|rng| bucket(rng, 100, 0.0, &["a"], 0.0, None), &cfg);
    assert!(!js.is_empty());
    assert!(t.judge(&cfg).is_empty(), "same window end judged twice");
    assert!(t.retained_buckets() <= 61, "{}", t.retained_buckets());
    assert!(t.ingest(b"garbage", 200 * MIN, MIN).is_err());
    assert_eq!(t.decode_errors(), 1);
}

#[test]
fn an_external_reference_is_used_at_once() {
    let cfg = FeatureDriftConfig::default();
    let mut rng = SmallRng::seed_from_u64(1);
    let mut t = SignatureTracker::new(10 * MIN, 60 * MIN);
    let reference = bucket(&mut rng, 2_000, 0.0, &["a"], 0.0, None);
    t.set_reference(&reference, -100 * MIN, -40 * MIN).unwrap();
    let mut js = Vec::new();
    // Judged once 200 values are in (minute 1); DRIFT once drifting for a whole (10 min)
    // window.
    for b in 0..12 {
        t.ingest(&bucket(&mut rng, 100, 3.0, &["a"], 0.0, None), b * MIN, MIN)
            .unwrap();
        js = t.judge(&cfg);
        let expect = match b {
            0 => None,
            1..=10 => Some(false),
            _ => Some(true),
        };
        assert_eq!(
            drifted(&js, "wasserstein_normed", "x"),
            expect,
            "minute {b}"
        );
    }
    assert_eq!(drifted(&js, "wasserstein_normed", "x"), Some(true));
    assert_eq!(t.reference().unwrap().2, 2_000);
}

#[test]
fn config_validation_names_the_field() {
    FeatureDriftConfig::default().validate().unwrap();
    let bad = |c: FeatureDriftConfig| c.validate().unwrap_err().0;
    assert_eq!(
        bad(FeatureDriftConfig {
            window: "1x".into(),
            ..Default::default()
        }),
        "feature_drift.window"
    );
    assert_eq!(
        bad(FeatureDriftConfig {
            max_missing_rate_increase: 0.0,
            ..Default::default()
        }),
        "feature_drift.max_missing_rate_increase"
    );
}
