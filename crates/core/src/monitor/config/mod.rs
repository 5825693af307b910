//! Monitor configuration: a default profile and per-model overrides.
//!
//! Every struct rejects unknown fields (a misspelt threshold must fail loudly, not silently
//! fall back to its default) and fills missing ones with documented defaults. An override
//! replaces whole sections of the default profile (`windows`, `maturity`, `baseline`,
//! `accuracy_drop`, `estimated_drop`, `misrouted_inputs`, `adwin`, `page_hinkley`, `ddm`, `eddm`, `feature_drift`,
//! `hysteresis`, `policy`);
//! fields missing inside an overriding section take the built-in defaults, not the profile's.
//!
//! Every duration is humantime text, as in the worker's settings (`500ms`, `90s`, `15m`,
//! `24h`, `1h 30m`, `7days`; see [`duration`](super::duration)). The settings that held
//! milliseconds (`maturity_ms`, `warmup_ms`, `hold_ms`, `cooldown_ms`) are now `maturity`,
//! `warmup`, `hold` and `cooldown`; the old names and bare integers of milliseconds are still
//! read, so older files load unchanged. In Rust the values stay milliseconds (`maturity_ms`…).
//!
//! ```json
//! { "default": { "windows": ["15m", "1h", "24h"], "maturity": "15m" },
//!   "models": { "fraud": { "policy": { "dry_run": true } } } }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::{AdwinConfig, DdmConfig, EddmConfig, PageHinkleyConfig};

use super::baseline::BaselineConfig;
use super::detectors::{
    AccuracyDropConfig, EstimatedDropConfig, MisroutedInputsConfig, StreamDetectorConfig,
    ACCURACY_DROP, ADWIN, DDM, EDDM, ESTIMATED_DROP, MISROUTED_INPUTS, PAGE_HINKLEY,
};
use super::duration::{self, parse_duration_ms};
use super::features::FeatureDriftConfig;
use super::policy::{PolicyConfig, TriggerMode};
use super::state::Hysteresis;
use super::window::WindowSpec;

/// An invalid configuration, naming where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid monitor config for {scope}: {field}: {message}")]
pub struct ConfigError {
    /// `default` or `model <id>`.
    pub scope: String,
    pub field: String,
    pub message: String,
}

/// Everything about one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Sliding windows by length, as durations (`15m`, `1h 30m`, `2d`); the text is also the
    /// window's name, so `60m` and `1h` are two windows. Default `15m`, `1h`, `24h`: a fast
    /// signal, the judged window, and a daily view for dashboards.
    pub windows: Vec<String>,
    /// `maturity` (formerly `maturity_ms`): buckets younger than this are left out of windows
    /// and not yet fed to stream detectors. Default `15m`: set it near the 95th percentile of
    /// label delay; shorter judges buckets on their quickest labels only, longer delays
    /// detection by as much.
    #[serde(
        rename = "maturity",
        alias = "maturity_ms",
        with = "duration::maturity"
    )]
    pub maturity_ms: i64,
    pub baseline: BaselineConfig,
    pub accuracy_drop: AccuracyDropConfig,
    /// The drop of the accuracy estimated from scores before labels come (CBPE); off by
    /// default, see `detectors::EstimatedDropConfig`.
    pub estimated_drop: EstimatedDropConfig,
    /// Data quality: the share of inputs read off their key's murmur2 partition; on by
    /// default and advisory, see `detectors::MisroutedInputsConfig`.
    pub misrouted_inputs: MisroutedInputsConfig,
    pub adwin: StreamDetectorConfig<AdwinConfig>,
    pub page_hinkley: StreamDetectorConfig<PageHinkleyConfig>,
    pub ddm: StreamDetectorConfig<DdmConfig>,
    /// Off by default; see `detectors::default_eddm`.
    pub eddm: StreamDetectorConfig<EddmConfig>,
    /// Data drift, prediction drift and data quality from the partials' signatures
    /// (advisory unless the policy lists them).
    pub feature_drift: FeatureDriftConfig,
    pub hysteresis: Hysteresis,
    pub policy: PolicyConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            windows: vec!["15m".into(), "1h".into(), "24h".into()],
            maturity_ms: 15 * 60_000,
            baseline: BaselineConfig::default(),
            accuracy_drop: AccuracyDropConfig::default(),
            estimated_drop: EstimatedDropConfig::default(),
            misrouted_inputs: MisroutedInputsConfig::default(),
            adwin: StreamDetectorConfig::default(),
            page_hinkley: StreamDetectorConfig::default(),
            ddm: StreamDetectorConfig::default(),
            eddm: StreamDetectorConfig::default(),
            feature_drift: FeatureDriftConfig::default(),
            hysteresis: Hysteresis::default(),
            policy: PolicyConfig::default(),
        }
    }
}

/// Sections of [`ModelConfig`] one model replaces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelOverride {
    pub windows: Option<Vec<String>>,
    #[serde(
        rename = "maturity",
        alias = "maturity_ms",
        with = "duration::maturity_override"
    )]
    pub maturity_ms: Option<i64>,
    pub baseline: Option<BaselineConfig>,
    pub accuracy_drop: Option<AccuracyDropConfig>,
    pub estimated_drop: Option<EstimatedDropConfig>,
    pub misrouted_inputs: Option<MisroutedInputsConfig>,
    pub adwin: Option<StreamDetectorConfig<AdwinConfig>>,
    pub page_hinkley: Option<StreamDetectorConfig<PageHinkleyConfig>>,
    pub ddm: Option<StreamDetectorConfig<DdmConfig>>,
    pub eddm: Option<StreamDetectorConfig<EddmConfig>>,
    pub feature_drift: Option<FeatureDriftConfig>,
    pub hysteresis: Option<Hysteresis>,
    pub policy: Option<PolicyConfig>,
}

/// The monitor's configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Profile of every model without an override.
    pub default: ModelConfig,
    /// Overrides by model id.
    pub models: BTreeMap<String, ModelOverride>,
}

impl MonitorConfig {
    /// The effective configuration of `model_id`.
    pub fn for_model(&self, model_id: &str) -> ModelConfig {
        let mut c = self.default.clone();
        if let Some(o) = self.models.get(model_id) {
            let o = o.clone();
            if let Some(v) = o.windows {
                c.windows = v;
            }
            if let Some(v) = o.maturity_ms {
                c.maturity_ms = v;
            }
            if let Some(v) = o.baseline {
                c.baseline = v;
            }
            if let Some(v) = o.accuracy_drop {
                c.accuracy_drop = v;
            }
            if let Some(v) = o.estimated_drop {
                c.estimated_drop = v;
            }
            if let Some(v) = o.misrouted_inputs {
                c.misrouted_inputs = v;
            }
            if let Some(v) = o.adwin {
                c.adwin = v;
            }
            if let Some(v) = o.page_hinkley {
                c.page_hinkley = v;
            }
            if let Some(v) = o.ddm {
                c.ddm = v;
            }
            if let Some(v) = o.eddm {
                c.eddm = v;
            }
            if let Some(v) = o.feature_drift {
                c.feature_drift = v;
            }
            if let Some(v) = o.hysteresis {
                c.hysteresis = v;
            }
            if let Some(v) = o.policy {
                c.policy = v;
            }
        }
        c
    }

    /// Checks the default profile and every model's effective configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default.validate("default")?;
        for id in self.models.keys() {
            self.for_model(id).validate(&format!("model {id}"))?;
        }
        Ok(())
    }
}

impl ModelConfig {
    /// The windows with their lengths (call [`validate`](Self::validate) first for messages).
    pub fn window_specs(&self) -> Vec<WindowSpec> {
        self.windows
            .iter()
            .filter_map(|w| {
                parse_duration_ms(w).ok().map(|length_ms| WindowSpec {
                    name: w.clone(),
                    length_ms,
                })
            })
            .collect()
    }

    /// The built-in detectors enabled, by name, in the order they are judged.
    pub fn enabled_detectors(&self) -> Vec<&'static str> {
        [
            ACCURACY_DROP,
            ESTIMATED_DROP,
            MISROUTED_INPUTS,
            ADWIN,
            PAGE_HINKLEY,
            DDM,
            EDDM,
        ]
        .into_iter()
        .filter(|d| self.builtin_enabled(d) == Some(true))
        .collect()
    }

    /// Whether the built-in detector `name` is enabled; `None` for other names.
    pub fn builtin_enabled(&self, name: &str) -> Option<bool> {
        match name {
            ACCURACY_DROP => Some(self.accuracy_drop.enabled),
            ESTIMATED_DROP => Some(self.estimated_drop.enabled),
            MISROUTED_INPUTS => Some(self.misrouted_inputs.enabled),
            ADWIN => Some(self.adwin.enabled),
            PAGE_HINKLEY => Some(self.page_hinkley.enabled),
            DDM => Some(self.ddm.enabled),
            EDDM => Some(self.eddm.enabled),
            _ => None,
        }
    }

    /// Checks every field; `scope` names the profile in the message.
    pub fn validate(&self, scope: &str) -> Result<(), ConfigError> {
        let err = |field: &str, message: String| ConfigError {
            scope: scope.to_owned(),
            field: field.to_owned(),
            message,
        };
        let check = |ok: bool, field: &str, message: &dyn Fn() -> String| {
            if ok {
                Ok(())
            } else {
                Err(err(field, message()))
            }
        };
        check(!self.windows.is_empty(), "windows", &|| {
            "at least one window is needed".into()
        })?;
        let mut seen = Vec::new();
        for w in &self.windows {
            match parse_duration_ms(w) {
                Ok(ms) if ms > 0 => {}
                Ok(_) => return Err(err("windows", format!("`{w}` must be longer than 0"))),
                Err(e) => return Err(err("windows", e.to_string())),
            }
            check(!seen.contains(&w), "windows", &|| {
                format!("`{w}` is listed twice")
            })?;
            seen.push(w);
        }
        check(self.maturity_ms >= 0, "maturity", &|| {
            format!("{} ms must be >= 0", self.maturity_ms)
        })?;
        check(self.baseline.samples >= 1, "baseline.samples", &|| {
            "must be at least 1".into()
        })?;
        check(self.baseline.warmup_ms >= 0, "baseline.warmup", &|| {
            format!("{} ms must be >= 0", self.baseline.warmup_ms)
        })?;

        let a = &self.accuracy_drop;
        // Checked even when the test is off: the policy reads its labeled count there too.
        check(
            self.windows.contains(&a.window),
            "accuracy_drop.window",
            &|| {
                format!(
                    "`{}` is not one of the windows {:?}",
                    a.window, self.windows
                )
            },
        )?;
        check(
            a.p_drift > 0.0 && a.p_drift < 1.0,
            "accuracy_drop.p_drift",
            &|| format!("{} must be in (0, 1)", a.p_drift),
        )?;
        check(
            a.p_warning >= a.p_drift && a.p_warning < 1.0,
            "accuracy_drop.p_warning",
            &|| format!("{} must be in [p_drift, 1)", a.p_warning),
        )?;
        check(
            a.min_drop > 0.0 && a.min_drop <= 1.0,
            "accuracy_drop.min_drop",
            &|| format!("{} must be in (0, 1]", a.min_drop),
        )?;
        check(
            a.min_relative_increase.is_finite() && a.min_relative_increase > 0.0,
            "accuracy_drop.min_relative_increase",
            &|| format!("{} must be finite and > 0", a.min_relative_increase),
        )?;
        check(
            (0.0..=1.0).contains(&a.min_coverage),
            "accuracy_drop.min_coverage",
            &|| format!("{} must be in [0, 1]", a.min_coverage),
        )?;
        check(
            a.baseline_confidence >= 0.5 && a.baseline_confidence < 1.0,
            "accuracy_drop.baseline_confidence",
            &|| format!("{} must be in [0.5, 1)", a.baseline_confidence),
        )?;
        check(
            a.hold_ratio > 0.0 && a.hold_ratio <= 1.0,
            "accuracy_drop.hold_ratio",
            &|| format!("{} must be in (0, 1]", a.hold_ratio),
        )?;

        self.estimated_drop
            .validate(&self.windows)
            .map_err(|(field, message)| err(field, message))?;
        self.misrouted_inputs
            .validate(&self.windows)
            .map_err(|(field, message)| err(field, message))?;

        let detector = |field: &str, r: Result<(), crate::detect::ConfigError>| {
            r.map_err(|e| err(field, e.to_string()))
        };
        detector("adwin.params", self.adwin.params.validate())?;
        detector("page_hinkley.params", self.page_hinkley.params.validate())?;
        detector("ddm.params", self.ddm.params.validate())?;
        detector("eddm.params", self.eddm.params.validate())?;
        for (name, hold, inc, cap) in [
            (
                "adwin",
                self.adwin.hold_ms,
                self.adwin.min_increase,
                self.adwin.max_updates_per_bucket,
            ),
            (
                "page_hinkley",
                self.page_hinkley.hold_ms,
                self.page_hinkley.min_increase,
                1,
            ),
            ("ddm", self.ddm.hold_ms, self.ddm.min_increase, 1),
            (
                "eddm",
                self.eddm.hold_ms,
                self.eddm.min_increase,
                self.eddm.max_updates_per_bucket,
            ),
        ] {
            check(hold >= 0, &format!("{name}.hold"), &|| {
                format!("{hold} ms must be >= 0")
            })?;
            check(
                (0.0..=1.0).contains(&inc),
                &format!("{name}.min_increase"),
                &|| format!("{inc} must be in [0, 1]"),
            )?;
            check(cap >= 1, &format!("{name}.max_updates_per_bucket"), &|| {
                "must be at least 1".into()
            })?;
        }
        self.feature_drift
            .validate()
            .map_err(|(field, message)| err(field, message))?;
        check(self.hysteresis.enter >= 1, "hysteresis.enter", &|| {
            "must be at least 1".into()
        })?;
        check(self.hysteresis.exit >= 1, "hysteresis.exit", &|| {
            "must be at least 1".into()
        })?;

        let p = &self.policy;
        check(p.cooldown_ms >= 0, "policy.cooldown", &|| {
            format!("{} ms must be >= 0", p.cooldown_ms)
        })?;
        check(p.daily_budget >= 1, "policy.daily_budget", &|| {
            "must be at least 1 (disable the policy with `enabled = false`)".into()
        })?;
        p.validate_costs().map_err(|(field, m)| err(field, m))?;
        if p.enabled {
            check(!p.detectors.is_empty(), "policy.detectors", &|| {
                "an enabled policy needs at least one detector".into()
            })?;
            for d in &p.detectors {
                // Names other than the built-in ones belong to detectors submitted from
                // outside (feature drift); only built-in ones can be checked here.
                if self.builtin_enabled(d) == Some(false) && p.mode == TriggerMode::All {
                    return Err(err(
                        "policy.detectors",
                        format!("`{d}` is disabled, so mode `all` could never fire"),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
