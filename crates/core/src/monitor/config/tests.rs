//! Unit tests of the monitor configuration, beside it.

use super::*;

#[test]
fn defaults_are_valid_and_parse_from_empty() {
    let c: MonitorConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(c, MonitorConfig::default());
    c.validate().unwrap();
    let specs = c.default.window_specs();
    assert_eq!(specs.len(), 3);
    assert_eq!(specs[1].length_ms, 3_600_000);
}

#[test]
fn overrides_replace_sections() {
    let c: MonitorConfig = serde_json::from_str(
        r#"{"default": {"maturity": "1m"},
            "models": {"fraud": {"policy": {"dry_run": true}, "windows": ["5m", "1h"]}}}"#,
    )
    .unwrap();
    c.validate().unwrap();
    let fraud = c.for_model("fraud");
    assert!(fraud.policy.dry_run);
    assert_eq!(fraud.windows, vec!["5m", "1h"]);
    assert_eq!(fraud.maturity_ms, 60_000, "profile value kept");
    let other = c.for_model("other");
    assert!(!other.policy.dry_run);
    assert_eq!(other.windows.len(), 3);
}

#[test]
fn unknown_fields_are_rejected() {
    for text in [
        r#"{"defaults": {}}"#,
        r#"{"default": {"maturty": "15m"}}"#,
        r#"{"default": {"baseline": {"warmup_s": "1m"}}}"#,
        r#"{"default": {"accuracy_drop": {"pdrift": 0.1}}}"#,
        r#"{"models": {"m": {"polciy": {}}}}"#,
        r#"{"default": {"feature_drift": {"windw": "1h"}}}"#,
    ] {
        assert!(
            serde_json::from_str::<MonitorConfig>(text).is_err(),
            "{text}"
        );
    }
}

#[test]
fn every_duration_is_humantime_text() {
    let c: MonitorConfig = serde_json::from_str(
        r#"{"default": {
            "windows": ["90s", "5m", "1h 30m", "24h"],
            "maturity": "5m",
            "baseline": {"warmup": "90s"},
            "accuracy_drop": {"window": "1h 30m"},
            "adwin": {"hold": "1h 30m"},
            "page_hinkley": {"hold": "90s"},
            "ddm": {"hold": "24h"},
            "eddm": {"hold": "5m"},
            "feature_drift": {"window": "1h 30m", "reference": "24h"},
            "policy": {"cooldown": "24h"}},
          "models": {"fraud": {"maturity": "90s"}}}"#,
    )
    .unwrap();
    c.validate().unwrap();
    let d = &c.default;
    let lengths: Vec<i64> = d.window_specs().iter().map(|w| w.length_ms).collect();
    assert_eq!(lengths, vec![90_000, 300_000, 5_400_000, 86_400_000]);
    assert_eq!(d.maturity_ms, 300_000);
    assert_eq!(d.baseline.warmup_ms, 90_000);
    assert_eq!(d.adwin.hold_ms, 5_400_000);
    assert_eq!(d.page_hinkley.hold_ms, 90_000);
    assert_eq!(d.ddm.hold_ms, 86_400_000);
    assert_eq!(d.eddm.hold_ms, 300_000);
    assert_eq!(d.feature_drift.lengths_ms(), Some((5_400_000, 86_400_000)));
    assert_eq!(d.policy.cooldown_ms, 86_400_000);
    assert_eq!(c.for_model("fraud").maturity_ms, 90_000);
}

#[test]
fn the_former_millisecond_settings_still_load() {
    let old: MonitorConfig = serde_json::from_str(
        r#"{"default": {"maturity_ms": 900000, "baseline": {"warmup_ms": 0},
            "adwin": {"hold_ms": 1800000}, "page_hinkley": {"hold_ms": 1800000},
            "ddm": {"hold_ms": 1800000}, "eddm": {"hold_ms": 1800000},
            "policy": {"cooldown_ms": 86400000}},
          "models": {"fraud": {"maturity_ms": 60000}}}"#,
    )
    .unwrap();
    let new: MonitorConfig = serde_json::from_str(
        r#"{"default": {"maturity": "15m", "baseline": {"warmup": "0s"},
            "adwin": {"hold": "30m"}, "page_hinkley": {"hold": "30m"},
            "ddm": {"hold": "30m"}, "eddm": {"hold": "30m"},
            "policy": {"cooldown": "24h"}},
          "models": {"fraud": {"maturity": "1m"}}}"#,
    )
    .unwrap();
    assert_eq!(old, new);
    assert_eq!(
        old.default,
        ModelConfig::default(),
        "the defaults, either way"
    );
    // A bare integer under the new name is milliseconds too.
    let c: MonitorConfig = serde_json::from_str(r#"{"default": {"maturity": 60000}}"#).unwrap();
    assert_eq!(c.default.maturity_ms, 60_000);
    // One setting under both names is refused.
    let e = serde_json::from_str::<MonitorConfig>(
        r#"{"default": {"maturity": "15m", "maturity_ms": 900000}}"#,
    )
    .unwrap_err();
    assert!(e.to_string().contains("duplicate field `maturity`"), "{e}");
}

#[test]
fn a_wrong_duration_is_refused_naming_the_setting() {
    for (text, field, value) in [
        (r#"{"default": {"maturity": "15x"}}"#, "maturity", "15x"),
        (r#"{"default": {"maturity": "15"}}"#, "maturity", "15"),
        (
            r#"{"default": {"maturity": "1500us"}}"#,
            "maturity",
            "1500us",
        ),
        (r#"{"default": {"maturity": 1.5}}"#, "maturity", "1.5"),
        (
            r#"{"default": {"baseline": {"warmup": "soon"}}}"#,
            "warmup",
            "soon",
        ),
        (r#"{"default": {"adwin": {"hold": "30 mn"}}}"#, "hold", "mn"),
        (
            r#"{"default": {"policy": {"cooldown": "1 fortnight"}}}"#,
            "cooldown",
            "fortnight",
        ),
        (
            r#"{"models": {"m": {"maturity": "5 minutes ago"}}}"#,
            "maturity",
            "ago",
        ),
    ] {
        let e = serde_json::from_str::<MonitorConfig>(text)
            .unwrap_err()
            .to_string();
        assert!(e.contains(field) && e.contains(value), "{text}: {e}");
    }
    // Durations kept as text (their text names the window) are checked by `validate`.
    let c = ModelConfig {
        windows: vec!["15m".into(), "1hour30".into()],
        ..ModelConfig::default()
    };
    let e = c.validate("default").unwrap_err();
    assert_eq!(e.field, "windows");
    assert!(e.to_string().contains("`1hour30`"), "{e}");
    let mut c = ModelConfig::default();
    c.feature_drift.window = "0s".into();
    let e = c.validate("default").unwrap_err();
    assert_eq!(e.field, "feature_drift.window");
}

#[test]
fn files_get_durations_as_text_and_the_changelog_gets_milliseconds() {
    let c = MonitorConfig::default();
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["default"]["maturity"], "15m");
    assert_eq!(json["default"]["adwin"]["hold"], "30m");
    assert_eq!(json["default"]["policy"]["cooldown"], "1day");
    assert_eq!(json["default"]["baseline"]["warmup"], "0s");
    let back: MonitorConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, c);
    // The changelog's postcard form is unchanged: a plain i64 where the field was one.
    let b = BaselineConfig {
        samples: 1000,
        warmup_ms: 90_000,
    };
    let bytes = postcard::to_allocvec(&b).unwrap();
    assert_eq!(bytes, postcard::to_allocvec(&(1000u64, 90_000i64)).unwrap());
    assert_eq!(postcard::from_bytes::<BaselineConfig>(&bytes).unwrap(), b);
    let m = c.for_model("any");
    let bytes = postcard::to_allocvec(&m).unwrap();
    assert_eq!(postcard::from_bytes::<ModelConfig>(&bytes).unwrap(), m);
}

#[test]
fn validation_names_the_field() {
    let bad = |f: &dyn Fn(&mut ModelConfig)| {
        let mut c = ModelConfig::default();
        f(&mut c);
        c.validate("default").unwrap_err()
    };
    let e = bad(&|c| c.windows = vec!["15x".into()]);
    assert_eq!(e.field, "windows");
    assert!(e.to_string().contains("15x"), "{e}");
    assert_eq!(bad(&|c| c.windows.push("1h".into())).field, "windows");
    assert_eq!(
        bad(&|c| c.accuracy_drop.window = "2h".into()).field,
        "accuracy_drop.window"
    );
    assert_eq!(
        bad(&|c| c.accuracy_drop.p_warning = 0.001).field,
        "accuracy_drop.p_warning"
    );
    assert_eq!(bad(&|c| c.adwin.params.delta = 2.0).field, "adwin.params");
    assert_eq!(bad(&|c| c.hysteresis.exit = 0).field, "hysteresis.exit");
    assert_eq!(
        bad(&|c| c.feature_drift.reference = "0m".into()).field,
        "feature_drift.reference"
    );
    assert_eq!(
        bad(&|c| c.policy.daily_budget = 0).field,
        "policy.daily_budget"
    );
    let e = bad(&|c| {
        c.policy.mode = TriggerMode::All;
        c.policy.detectors = vec!["accuracy_drop".into(), "ddm".into()];
        c.ddm.enabled = false;
    });
    assert_eq!(e.field, "policy.detectors");
    let mut m = MonitorConfig::default();
    m.models.insert(
        "x".into(),
        ModelOverride {
            maturity_ms: Some(-1),
            ..ModelOverride::default()
        },
    );
    assert_eq!(m.validate().unwrap_err().scope, "model x");
}

#[test]
fn the_estimated_drop_is_off_by_default_and_checked_when_on() {
    let c = ModelConfig::default();
    assert!(!c.estimated_drop.enabled);
    assert_eq!(c.builtin_enabled("estimated_drop"), Some(false));
    assert_eq!(
        c.enabled_detectors(),
        vec![
            "accuracy_drop",
            "misrouted_inputs",
            "adwin",
            "page_hinkley",
            "ddm"
        ]
    );
    // Off, its window need not exist.
    let mut off = ModelConfig {
        windows: vec!["15m".into(), "24h".into()],
        ..ModelConfig::default()
    };
    off.accuracy_drop.window = "15m".into();
    off.validate("default").unwrap();
    let mut on = off.clone();
    on.estimated_drop.enabled = true;
    let e = on.validate("default").unwrap_err();
    assert_eq!(e.field, "estimated_drop.window");
    on.estimated_drop.window = "24h".into();
    on.validate("default").unwrap();
    on.estimated_drop.max_drop = 0.0;
    assert_eq!(
        on.validate("default").unwrap_err().field,
        "estimated_drop.max_drop"
    );
    // An enabled policy in mode `all` cannot wait on it while it is off.
    let mut p = ModelConfig::default();
    p.policy.mode = TriggerMode::All;
    p.policy.detectors = vec!["accuracy_drop".into(), "estimated_drop".into()];
    assert_eq!(p.validate("default").unwrap_err().field, "policy.detectors");
    // Read from a file, misspellings refused, per-model override replaces the section.
    let m: MonitorConfig = serde_json::from_str(
        r#"{"models": {"fraud": {"estimated_drop": {"enabled": true, "max_drop": 0.1}}}}"#,
    )
    .unwrap();
    m.validate().unwrap();
    let fraud = m.for_model("fraud");
    assert!(fraud.estimated_drop.enabled);
    assert_eq!(
        fraud.enabled_detectors()[..2],
        ["accuracy_drop", "estimated_drop"]
    );
    assert_eq!(fraud.estimated_drop.max_drop, 0.1);
    assert_eq!(fraud.estimated_drop.min_predictions, 200);
    assert!(!m.for_model("other").estimated_drop.enabled);
    assert!(serde_json::from_str::<MonitorConfig>(
        r#"{"default": {"estimated_drop": {"maxdrop": 0.1}}}"#
    )
    .is_err());
}
