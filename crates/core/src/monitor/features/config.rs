//! [`FeatureDriftConfig`]: settings of the signature checks of one model.

use serde::{Deserialize, Serialize};

use crate::monitor::duration::parse_duration_ms;
use crate::summary::drift::DriftSettings;

/// Settings of the signature checks of one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureDriftConfig {
    /// Default true.
    pub enabled: bool,
    /// Current window, a duration like `1h` or `1h 30m`. Default `1h`, the judged window of
    /// `accuracy_drop`: tens of thousands of values at modest traffic, so the tests see
    /// distribution changes, not noise.
    pub window: String,
    /// Reference: the traffic of this long (a duration like `1h`) from the version's first
    /// signed bucket. Default `1h`.
    pub reference: String,
    /// Both sides need at least this many values of a feature (predictions, for presence and
    /// missing rate) before it is judged. Default 200.
    pub min_samples: u64,
    /// Test the predicted label / value and score. Default true.
    pub prediction_drift: bool,
    /// Run the data-quality checks. Default true.
    pub data_quality: bool,
    /// `missing_rate` drifts when the missing share grew by more than this (absolute).
    /// Default 0.1.
    pub max_missing_rate_increase: f64,
    /// `unseen_categories` drifts when more than this share of current values are categories
    /// the reference never saw. Default 0.1.
    pub max_unseen_category_share: f64,
    /// `type_mismatch` drifts when the share of values of the wrong kind grew by more than
    /// this. Default 0.01.
    pub max_type_mismatch_increase: f64,
    /// Features never judged (ids, free text, timestamps). Default none.
    pub ignore: Vec<String>,
    /// False-discovery rate of one judgement's drift tests (every feature's default test,
    /// `prediction` and `prediction_score`), controlled by Benjamini–Hochberg over their
    /// p-values. Default 0.01: judgements repeat every minute, and a DRIFT verdict must
    /// moreover hold for a whole window of new data (see
    /// [`SignatureTracker::judge`](super::SignatureTracker::judge)). On a stable model every
    /// test's p-value is uniform (or larger), and BH then bounds the chance that a judgement
    /// flags *any* feature by this rate, however many features the model has; with drift it
    /// keeps most of the power of testing each feature alone (Holm would also bound that
    /// chance, at a larger cost in power when several features drift together).
    pub false_discovery_rate: f64,
}

impl Default for FeatureDriftConfig {
    fn default() -> Self {
        FeatureDriftConfig {
            enabled: true,
            window: "1h".to_owned(),
            reference: "1h".to_owned(),
            min_samples: 200,
            prediction_drift: true,
            data_quality: true,
            max_missing_rate_increase: 0.1,
            max_unseen_category_share: 0.1,
            max_type_mismatch_increase: 0.01,
            ignore: Vec::new(),
            false_discovery_rate: 0.01,
        }
    }
}

impl FeatureDriftConfig {
    /// Window and reference lengths in ms (valid after [`validate`](Self::validate)).
    pub fn lengths_ms(&self) -> Option<(i64, i64)> {
        Some((
            parse_duration_ms(&self.window).ok().filter(|&w| w > 0)?,
            parse_duration_ms(&self.reference).ok().filter(|&r| r > 0)?,
        ))
    }

    /// The first invalid field and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (field, text) in [
            ("feature_drift.window", &self.window),
            ("feature_drift.reference", &self.reference),
        ] {
            match parse_duration_ms(text) {
                Ok(ms) if ms > 0 => {}
                Ok(_) => return Err((field, format!("`{text}` must be longer than 0"))),
                Err(e) => return Err((field, e.to_string())),
            }
        }
        if self.min_samples < 1 {
            return Err(("feature_drift.min_samples", "must be at least 1".into()));
        }
        for (field, v) in [
            (
                "feature_drift.max_missing_rate_increase",
                self.max_missing_rate_increase,
            ),
            (
                "feature_drift.max_unseen_category_share",
                self.max_unseen_category_share,
            ),
            (
                "feature_drift.max_type_mismatch_increase",
                self.max_type_mismatch_increase,
            ),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return Err((field, format!("{v} must be in (0, 1]")));
            }
        }
        let q = self.false_discovery_rate;
        if !(q > 0.0 && q < 1.0) {
            return Err((
                "feature_drift.false_discovery_rate",
                format!("{q} must be in (0, 1)"),
            ));
        }
        Ok(())
    }

    /// The drift tests' settings: the defaults at this judgement's level.
    pub fn drift_settings(&self) -> DriftSettings {
        DriftSettings {
            alpha: self.false_discovery_rate,
            ..DriftSettings::default()
        }
    }
}
