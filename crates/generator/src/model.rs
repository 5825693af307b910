//! One simulated model: how features, truth and predictions are drawn.

use driftwatch_core::FeatureValue;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::config::{ActiveEvents, ModelKind, ModelSpec};

/// A model and its fixed random weights.
pub(crate) struct ModelState {
    pub spec: ModelSpec,
    numeric_weights: Vec<f64>,
    numeric_names: Vec<String>,
    categorical_names: Vec<String>,
    /// Category names per categorical feature.
    category_values: Vec<Vec<String>>,
    /// Cumulative weights of a skewed (1/(k+1)) distribution over categories.
    category_cdf: Vec<f64>,
}

/// One request as drawn.
pub(crate) struct Drawn {
    pub version: String,
    pub features: Vec<(String, FeatureValue)>,
    pub predicted_label: Option<String>,
    pub predicted_value: Option<f64>,
    pub scores: Option<Vec<(String, f64)>>,
    pub true_label: Option<String>,
    pub true_value: Option<f64>,
    pub correct: bool,
}

impl ModelState {
    pub fn new(spec: &ModelSpec, rng: &mut impl Rng) -> Self {
        let numeric_weights = (0..spec.numeric_features)
            .map(|_| rng.gen_range(-1.0..1.0))
            .collect();
        let weights: Vec<f64> = (0..spec.categories)
            .map(|k| 1.0 / (k as f64 + 1.0))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let category_cdf = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        ModelState {
            spec: spec.clone(),
            numeric_weights,
            numeric_names: (0..spec.numeric_features)
                .map(|j| format!("x{j}"))
                .collect(),
            categorical_names: (0..spec.categorical_features)
                .map(|j| format!("c{j}"))
                .collect(),
            category_values: (0..spec.categorical_features)
                .map(|j| (0..spec.categories).map(|k| format!("c{j}_v{k}")).collect())
                .collect(),
            category_cdf,
        }
    }

    pub fn draw(&self, rng: &mut impl Rng, events: &ActiveEvents) -> Drawn {
        let mut features =
            Vec::with_capacity(self.numeric_names.len() + self.categorical_names.len());
        let mut signal = 0.0;
        for (j, name) in self.numeric_names.iter().enumerate() {
            let shift: f64 = events
                .shifts
                .iter()
                .filter(|(f, _)| f == name)
                .map(|(_, s)| s)
                .sum();
            let z: f64 = StandardNormal.sample(rng);
            let x = z + shift;
            signal += self.numeric_weights.get(j).copied().unwrap_or(0.0) * x;
            if events.missing.iter().any(|m| m == name) {
                features.push((name.clone(), FeatureValue::Missing));
            } else {
                features.push((name.clone(), FeatureValue::Number(x)));
            }
        }
        for (j, name) in self.categorical_names.iter().enumerate() {
            let u: f64 = rng.gen();
            let k = self.category_cdf.iter().position(|c| u <= *c).unwrap_or(0);
            signal += (k as f64) * 0.1;
            let new = events
                .new_categories
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, c)| c);
            let value = match new {
                Some(c) if rng.gen_bool(0.3) => c.clone(),
                _ => self
                    .category_values
                    .get(j)
                    .and_then(|v| v.get(k))
                    .cloned()
                    .unwrap_or_default(),
            };
            if events.missing.iter().any(|m| m == name) {
                features.push((name.clone(), FeatureValue::Missing));
            } else {
                features.push((name.clone(), FeatureValue::Category(value)));
            }
        }
        let version = events
            .version
            .clone()
            .unwrap_or_else(|| self.spec.version.clone());
        match self.spec.kind {
            ModelKind::Classifier => self.classify(rng, events, signal, features, version),
            ModelKind::Regressor => {
                let noise: f64 = StandardNormal.sample(rng);
                let truth = signal + noise;
                let err: f64 = StandardNormal.sample(rng);
                let sigma = events.noise.unwrap_or(self.spec.noise);
                Drawn {
                    version,
                    features,
                    predicted_label: None,
                    predicted_value: Some(truth + err * sigma),
                    scores: None,
                    true_label: None,
                    true_value: Some(truth),
                    correct: (err * sigma).abs() <= self.spec.noise,
                }
            }
        }
    }

    fn classify(
        &self,
        rng: &mut impl Rng,
        events: &ActiveEvents,
        signal: f64,
        features: Vec<(String, FeatureValue)>,
        version: String,
    ) -> Drawn {
        let classes = &self.spec.classes;
        let n = classes.len().max(1);
        // The true class: the signal's logistic squashed into n equal bands.
        let noise: f64 = StandardNormal.sample(rng);
        let p = 1.0 / (1.0 + (-(signal + 0.5 * noise) / 1.5).exp());
        let truth = ((p * n as f64) as usize).min(n - 1);
        let accuracy = events.accuracy.unwrap_or(self.spec.accuracy);
        let correct = rng.gen_bool(accuracy.clamp(0.0, 1.0));
        let predicted = if correct || n == 1 {
            truth
        } else {
            (truth + rng.gen_range(1..n)) % n
        };
        let u: f64 = rng.gen();
        let top = if correct {
            0.55 + 0.45 * u
        } else {
            0.35 + 0.4 * u
        };
        let rest = (1.0 - top) / (n - 1).max(1) as f64;
        let scores = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), if i == predicted { top } else { rest }))
            .collect();
        Drawn {
            version,
            features,
            predicted_label: classes.get(predicted).cloned(),
            predicted_value: None,
            scores: Some(scores),
            true_label: classes.get(truth).cloned(),
            true_value: None,
            correct: predicted == truth,
        }
    }
}
