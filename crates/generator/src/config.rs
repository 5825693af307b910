//! Generator configuration: models, traffic shape and scripted scenarios.

use serde::{Deserialize, Serialize};

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeneratorError {
    #[error("invalid generator configuration: {0}")]
    Invalid(String),
}

/// Label delay: log-normal, given by its median and the σ of its logarithm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelDelay {
    /// Median delay, ms. Default 60 000 (one minute).
    pub median_ms: i64,
    /// σ of ln(delay). Default 1.5: about 0.3 % of labels take longer than an hour.
    pub sigma: f64,
    /// Labels that would take longer never come (counted as lost). Default one day.
    #[serde(default = "default_max_delay")]
    pub max_ms: i64,
}

fn default_max_delay() -> i64 {
    86_400_000
}

/// Classifier or regressor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    Classifier,
    Regressor,
}

/// One simulated model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub id: String,
    pub version: String,
    pub kind: ModelKind,
    /// Share of correct predictions (classifiers). Default 0.92.
    #[serde(default = "default_accuracy")]
    pub accuracy: f64,
    /// σ of the prediction error (regressors). Default 0.5.
    #[serde(default = "default_noise")]
    pub noise: f64,
    /// Class names (classifiers).
    #[serde(default)]
    pub classes: Vec<String>,
    /// Numeric features `x0…`. Default 12.
    #[serde(default = "default_numeric")]
    pub numeric_features: usize,
    /// Categorical features `c0…`. Default 8.
    #[serde(default = "default_categorical")]
    pub categorical_features: usize,
    /// Values per categorical feature. Default 6.
    #[serde(default = "default_categories")]
    pub categories: usize,
}

fn default_accuracy() -> f64 {
    0.92
}
fn default_noise() -> f64 {
    0.5
}
fn default_numeric() -> usize {
    12
}
fn default_categorical() -> usize {
    8
}
fn default_categories() -> usize {
    6
}

/// Something that happens to a model at an offset from the start of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScenarioEvent {
    /// The relation between inputs and truth changes: accuracy (or regression noise) moves.
    ConceptDrift {
        model: String,
        at_ms: i64,
        #[serde(default)]
        accuracy: Option<f64>,
        #[serde(default)]
        noise: Option<f64>,
    },
    /// A numeric feature's mean moves by `shift` standard deviations.
    CovariateShift {
        model: String,
        feature: String,
        at_ms: i64,
        shift: f64,
    },
    /// A categorical feature starts taking a value never seen before (30 % of requests).
    NewCategory {
        model: String,
        feature: String,
        at_ms: i64,
        category: String,
    },
    /// A feature stops being sent (null).
    FeatureMissing {
        model: String,
        feature: String,
        at_ms: i64,
    },
    /// A new model version takes over.
    NewVersion {
        model: String,
        at_ms: i64,
        version: String,
    },
}

impl ScenarioEvent {
    fn model(&self) -> &str {
        match self {
            ScenarioEvent::ConceptDrift { model, .. }
            | ScenarioEvent::CovariateShift { model, .. }
            | ScenarioEvent::NewCategory { model, .. }
            | ScenarioEvent::FeatureMissing { model, .. }
            | ScenarioEvent::NewVersion { model, .. } => model,
        }
    }

    fn at_ms(&self) -> i64 {
        match self {
            ScenarioEvent::ConceptDrift { at_ms, .. }
            | ScenarioEvent::CovariateShift { at_ms, .. }
            | ScenarioEvent::NewCategory { at_ms, .. }
            | ScenarioEvent::FeatureMissing { at_ms, .. }
            | ScenarioEvent::NewVersion { at_ms, .. } => *at_ms,
        }
    }
}

/// A ready-made scenario, added to `events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// Nothing changes.
    #[default]
    Stable,
    /// Halfway through, the first model's accuracy falls to 0.70 and its feature `x0` shifts by
    /// one standard deviation; the other models stay stable.
    Drift,
}

/// Everything the generator needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GeneratorConfig {
    /// Seed of every random choice. Default 1.
    pub seed: u64,
    /// Event time of the first prediction, ms since the Unix epoch.
    pub start_ms: i64,
    /// Event-time span of the predictions, ms. Default one hour.
    pub duration_ms: i64,
    /// Predictions per second of event time, over all models. Default 100.
    pub predictions_per_second: f64,
    pub models: Vec<ModelSpec>,
    pub label_delay: LabelDelay,
    /// Share of predictions whose label never comes. Default 0.05.
    pub label_loss: f64,
    /// Share of predictions (and of labels) sent twice. Default 0.01.
    pub duplicate_rate: f64,
    /// Per prediction, chance of a garbage record on each input. Default 0.001.
    pub garbage_rate: f64,
    pub scenario: Scenario,
    /// Scripted events, in addition to the scenario's.
    pub events: Vec<ScenarioEvent>,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig::two_models(1)
    }
}

/// The events active for one model at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActiveEvents {
    pub accuracy: Option<f64>,
    pub noise: Option<f64>,
    pub shifts: Vec<(String, f64)>,
    pub new_categories: Vec<(String, String)>,
    pub missing: Vec<String>,
    pub version: Option<String>,
}

impl GeneratorConfig {
    /// Two classifiers, `fraud` (3 classes) and `churn` (2 classes), 20 features each.
    pub fn two_models(seed: u64) -> Self {
        let classifier = |id: &str, classes: &[&str]| ModelSpec {
            id: id.into(),
            version: "v1".into(),
            kind: ModelKind::Classifier,
            accuracy: default_accuracy(),
            noise: default_noise(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            numeric_features: default_numeric(),
            categorical_features: default_categorical(),
            categories: default_categories(),
        };
        GeneratorConfig {
            seed,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            duration_ms: 3_600_000,
            predictions_per_second: 100.0,
            models: vec![
                classifier("fraud", &["legit", "review", "fraud"]),
                classifier("churn", &["stay", "leave"]),
            ],
            label_delay: LabelDelay {
                median_ms: 60_000,
                sigma: 1.5,
                max_ms: default_max_delay(),
            },
            label_loss: 0.05,
            duplicate_rate: 0.01,
            garbage_rate: 0.001,
            scenario: Scenario::Stable,
            events: vec![],
        }
    }

    /// This configuration with the scenario's events spelled out in `events`.
    pub fn resolved(mut self) -> Self {
        if self.scenario == Scenario::Drift {
            if let Some(first) = self.models.first() {
                let at_ms = self.duration_ms / 2;
                let model = first.id.clone();
                self.events.push(ScenarioEvent::ConceptDrift {
                    model: model.clone(),
                    at_ms,
                    accuracy: Some(0.70),
                    noise: Some(first.noise * 3.0),
                });
                self.events.push(ScenarioEvent::CovariateShift {
                    model,
                    feature: "x0".into(),
                    at_ms,
                    shift: 1.0,
                });
            }
            self.scenario = Scenario::Stable;
        }
        self
    }

    /// Checks values and references, with a message naming the field.
    pub fn validate(&self) -> Result<(), GeneratorError> {
        let bad = |m: String| Err(GeneratorError::Invalid(m));
        if self.models.is_empty() {
            return bad("models is empty".into());
        }
        if !(self.predictions_per_second > 0.0 && self.predictions_per_second.is_finite()) {
            return bad(format!(
                "predictions_per_second must be positive (got {})",
                self.predictions_per_second
            ));
        }
        if self.duration_ms <= 0 {
            return bad(format!(
                "duration_ms must be positive (got {})",
                self.duration_ms
            ));
        }
        for (name, p) in [
            ("label_loss", self.label_loss),
            ("duplicate_rate", self.duplicate_rate),
            ("garbage_rate", self.garbage_rate),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} must be within [0, 1] (got {p})"));
            }
        }
        if !(self.label_delay.sigma >= 0.0 && self.label_delay.sigma.is_finite())
            || self.label_delay.median_ms <= 0
        {
            return bad("label_delay needs median_ms > 0 and sigma ≥ 0".into());
        }
        for m in &self.models {
            if m.id.is_empty() || m.version.is_empty() {
                return bad("every model needs an id and a version".into());
            }
            if m.kind == ModelKind::Classifier && m.classes.len() < 2 {
                return bad(format!("classifier `{}` needs at least two classes", m.id));
            }
            if !(0.0..=1.0).contains(&m.accuracy) {
                return bad(format!("model `{}`: accuracy must be within [0, 1]", m.id));
            }
            if m.categories == 0 && m.categorical_features > 0 {
                return bad(format!("model `{}`: categories must be positive", m.id));
            }
        }
        for e in &self.events {
            if !self.models.iter().any(|m| m.id == e.model()) {
                return bad(format!(
                    "scenario event names unknown model `{}`",
                    e.model()
                ));
            }
        }
        Ok(())
    }

    /// Events of `model` that have happened by `offset_ms` (later ones override earlier ones).
    pub(crate) fn events_for(&self, model: &str, offset_ms: i64) -> ActiveEvents {
        let mut active = ActiveEvents::default();
        let mut events: Vec<&ScenarioEvent> = self
            .events
            .iter()
            .filter(|e| e.model() == model && e.at_ms() <= offset_ms)
            .collect();
        events.sort_by_key(|e| e.at_ms());
        for e in events {
            match e {
                ScenarioEvent::ConceptDrift {
                    accuracy, noise, ..
                } => {
                    active.accuracy = accuracy.or(active.accuracy);
                    active.noise = noise.or(active.noise);
                }
                ScenarioEvent::CovariateShift { feature, shift, .. } => {
                    active.shifts.push((feature.clone(), *shift))
                }
                ScenarioEvent::NewCategory {
                    feature, category, ..
                } => active
                    .new_categories
                    .push((feature.clone(), category.clone())),
                ScenarioEvent::FeatureMissing { feature, .. } => {
                    active.missing.push(feature.clone())
                }
                ScenarioEvent::NewVersion { version, .. } => active.version = Some(version.clone()),
            }
        }
        active
    }
}
