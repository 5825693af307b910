//! [`FeatureSummary`] (one input feature) and [`SignatureSummary`] (one model, version and
//! time bucket: every feature plus the prediction's output).

use super::{CategoricalSummary, FeatureId, FeatureInterner, NumericSummary, SummaryError};
use crate::{FeatureValue, Prediction};

/// Which kind of values a feature mostly carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeatureKind {
    /// No value seen yet (or only missing ones).
    Unknown,
    Numeric,
    Categorical,
}

/// Summary of one input feature.
///
/// A feature keeps *both* a numeric and a categorical part, each created on its first value.
/// Its [`kind`](Self::kind) is the majority kind (numeric on a tie) and
/// [`type_mismatches`](Self::type_mismatches) counts the values of the minority kind, a
/// data-quality signal (a numeric feature that suddenly receives strings). Deciding by counts
/// rather than by "the first value seen" keeps the merge associative and commutative: which
/// bucket saw a value first does not matter.
#[derive(Debug, Clone, Default)]
pub struct FeatureSummary {
    pub(crate) missing: u64,
    pub(crate) numeric: Option<Box<NumericSummary>>,
    pub(crate) categorical: Option<Box<CategoricalSummary>>,
}

impl FeatureSummary {
    /// Adds a number.
    #[inline]
    pub fn update_number(&mut self, x: f64) {
        self.numeric.get_or_insert_with(Default::default).update(x);
    }

    /// Adds a category.
    #[inline]
    pub fn update_category(&mut self, value: &str) {
        self.categorical
            .get_or_insert_with(Default::default)
            .update(value);
    }

    /// Counts a missing (null or absent) value.
    #[inline]
    pub fn update_missing(&mut self) {
        self.missing += 1;
    }

    /// Adds an owned feature value.
    pub fn update(&mut self, value: &FeatureValue) {
        match value {
            FeatureValue::Missing => self.update_missing(),
            FeatureValue::Number(x) => self.update_number(*x),
            FeatureValue::Category(s) => self.update_category(s),
        }
    }

    /// Merges `other` into `self`.
    pub fn merge(&mut self, other: &FeatureSummary) {
        self.missing = self.missing.saturating_add(other.missing);
        if let Some(n) = &other.numeric {
            self.numeric.get_or_insert_with(Default::default).merge(n);
        }
        if let Some(c) = &other.categorical {
            self.categorical
                .get_or_insert_with(Default::default)
                .merge(c);
        }
    }

    /// Pushes staged values into the main sketches.
    pub fn flush(&mut self) {
        if let Some(n) = &mut self.numeric {
            n.flush();
        }
        if let Some(c) = &mut self.categorical {
            c.flush();
        }
    }

    fn numeric_count(&self) -> u64 {
        self.numeric.as_ref().map_or(0, |n| n.count())
    }

    fn categorical_count(&self) -> u64 {
        self.categorical.as_ref().map_or(0, |c| c.count())
    }

    /// The majority kind of value.
    pub fn kind(&self) -> FeatureKind {
        let (n, c) = (self.numeric_count(), self.categorical_count());
        if n == 0 && c == 0 {
            FeatureKind::Unknown
        } else if n >= c {
            FeatureKind::Numeric
        } else {
            FeatureKind::Categorical
        }
    }

    /// Values of the minority kind.
    pub fn type_mismatches(&self) -> u64 {
        self.numeric_count().min(self.categorical_count())
    }

    /// Non-missing values of either kind.
    pub fn count(&self) -> u64 {
        self.numeric_count()
            .saturating_add(self.categorical_count())
    }

    /// Missing values: nulls, plus non-finite numbers.
    pub fn missing(&self) -> u64 {
        self.missing
            .saturating_add(self.numeric.as_ref().map_or(0, |n| n.missing()))
    }

    /// The numeric part, if any number was seen.
    pub fn numeric(&self) -> Option<&NumericSummary> {
        self.numeric.as_deref()
    }

    /// The categorical part, if any string was seen.
    pub fn categorical(&self) -> Option<&CategoricalSummary> {
        self.categorical.as_deref()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.missing == 0 && self.numeric.is_none() && self.categorical.is_none()
    }
}

/// The statistical signature of one (model, version, time bucket): every input feature by
/// interned id, the prediction's output, and the number of predictions.
///
/// Feature ids come from a [`FeatureInterner`]; signatures that are merged must share it
/// (one per join task, or per monitor). [`to_bytes`](Self::to_bytes) spells names out, so a
/// signature can travel between processes with different interners.
#[derive(Debug, Clone, Default)]
pub struct SignatureSummary {
    pub(crate) predictions: u64,
    /// Indexed by [`FeatureId`].
    pub(crate) features: Vec<FeatureSummary>,
    pub(crate) predicted_label: CategoricalSummary,
    pub(crate) predicted_value: NumericSummary,
    pub(crate) score: NumericSummary,
}

impl SignatureSummary {
    /// An empty signature.
    pub fn new() -> Self {
        Self::default()
    }

    #[inline]
    fn slot(&mut self, id: FeatureId) -> &mut FeatureSummary {
        let i = id.index();
        if i >= self.features.len() {
            self.grow(i);
        }
        // In bounds: `grow` just made it so.
        &mut self.features[i]
    }

    #[cold]
    fn grow(&mut self, i: usize) {
        self.features.resize_with(i + 1, FeatureSummary::default);
    }

    /// Adds a number to feature `id`.
    #[inline]
    pub fn update_number(&mut self, id: FeatureId, x: f64) {
        self.slot(id).update_number(x);
    }

    /// Adds a category to feature `id`.
    #[inline]
    pub fn update_category(&mut self, id: FeatureId, value: &str) {
        self.slot(id).update_category(value);
    }

    /// Counts a missing value of feature `id`.
    #[inline]
    pub fn update_missing(&mut self, id: FeatureId) {
        self.slot(id).update_missing();
    }

    /// Records one prediction's output and counts the prediction. `score` is the probability
    /// of the predicted class, when the model exposes it.
    #[inline]
    pub fn update_output(&mut self, label: Option<&str>, value: Option<f64>, score: Option<f64>) {
        self.predictions += 1;
        match label {
            Some(l) => self.predicted_label.update(l),
            None => self.predicted_label.update_missing(),
        }
        match value {
            Some(v) => self.predicted_value.update(v),
            None => self.predicted_value.update_missing(),
        }
        match score {
            Some(s) => self.score.update(s),
            None => self.score.update_missing(),
        }
    }

    /// Adds a whole owned prediction (features interned into `interner`). The score is the
    /// one of the predicted label, if the prediction carries scores.
    pub fn update_prediction(
        &mut self,
        interner: &mut FeatureInterner,
        p: &Prediction,
    ) -> Result<(), SummaryError> {
        for (name, value) in &p.features {
            let id = interner.intern(name)?;
            self.slot(id).update(value);
        }
        let score = match (&p.predicted_label, &p.scores) {
            (Some(label), Some(scores)) => scores
                .iter()
                .find(|(class, _)| class == label)
                .map(|(_, s)| *s),
            _ => None,
        };
        self.update_output(p.predicted_label.as_deref(), p.predicted_value, score);
        Ok(())
    }

    /// Merges `other` (built with the same interner) into `self`.
    pub fn merge(&mut self, other: &SignatureSummary) {
        self.predictions = self.predictions.saturating_add(other.predictions);
        if other.features.len() > self.features.len() {
            self.features
                .resize_with(other.features.len(), FeatureSummary::default);
        }
        for (mine, theirs) in self.features.iter_mut().zip(&other.features) {
            mine.merge(theirs);
        }
        self.predicted_label.merge(&other.predicted_label);
        self.predicted_value.merge(&other.predicted_value);
        self.score.merge(&other.score);
    }

    /// Pushes every staged value into the main sketches (done by `to_bytes` on a copy
    /// otherwise; call it before encoding a closed bucket).
    pub fn flush(&mut self) {
        for f in &mut self.features {
            f.flush();
        }
        self.predicted_label.flush();
        self.predicted_value.flush();
        self.score.flush();
    }

    /// Number of predictions.
    pub fn predictions(&self) -> u64 {
        self.predictions
    }

    /// The summary of one feature, if it was ever seen.
    pub fn feature(&self, id: FeatureId) -> Option<&FeatureSummary> {
        self.features.get(id.index()).filter(|f| !f.is_empty())
    }

    /// The summary of a feature by name.
    pub fn feature_by_name(
        &self,
        interner: &FeatureInterner,
        name: &str,
    ) -> Option<&FeatureSummary> {
        self.feature(interner.get(name)?)
    }

    /// Every feature seen, by id.
    pub fn features(&self) -> impl Iterator<Item = (FeatureId, &FeatureSummary)> + '_ {
        self.features
            .iter()
            .enumerate()
            .filter(|(_, f)| !f.is_empty())
            .filter_map(|(i, f)| u16::try_from(i).ok().map(|i| (FeatureId(i), f)))
    }

    /// Predicted labels (classifiers).
    pub fn predicted_label(&self) -> &CategoricalSummary {
        &self.predicted_label
    }

    /// Predicted values (regressors).
    pub fn predicted_value(&self) -> &NumericSummary {
        &self.predicted_value
    }

    /// Score of the predicted class.
    pub fn score(&self) -> &NumericSummary {
        &self.score
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn kind_is_the_majority_and_minority_counts_as_mismatch() {
        let mut f = FeatureSummary::default();
        assert_eq!(f.kind(), FeatureKind::Unknown);
        f.update_number(1.0);
        f.update_number(2.0);
        f.update_category("oops");
        f.update_missing();
        assert_eq!(f.kind(), FeatureKind::Numeric);
        assert_eq!(f.type_mismatches(), 1);
        assert_eq!(f.count(), 3);
        assert_eq!(f.missing(), 1);
        f.update_category("a");
        f.update_category("b");
        assert_eq!(f.kind(), FeatureKind::Categorical);
        assert_eq!(f.type_mismatches(), 2);
    }

    #[test]
    fn signature_tracks_features_and_outputs() {
        let mut interner = FeatureInterner::new();
        let p = Prediction {
            request_id: "r".into(),
            model_id: "m".into(),
            model_version: "1".into(),
            timestamp: 0,
            features: vec![
                ("age".into(), FeatureValue::Number(42.0)),
                ("country".into(), FeatureValue::Category("FR".into())),
                ("income".into(), FeatureValue::Missing),
            ],
            predicted_label: Some("yes".into()),
            predicted_value: None,
            scores: Some(vec![("no".into(), 0.2), ("yes".into(), 0.8)]),
            tags: vec![],
        };
        let mut s = SignatureSummary::new();
        s.update_prediction(&mut interner, &p).unwrap();
        s.update_prediction(&mut interner, &p).unwrap();
        assert_eq!(s.predictions(), 2);
        let age = s.feature_by_name(&interner, "age").unwrap();
        assert_eq!(age.numeric().unwrap().mean(), Some(42.0));
        let country = s.feature_by_name(&interner, "country").unwrap();
        assert_eq!(country.categorical().unwrap().estimate("FR"), 2);
        assert_eq!(s.feature_by_name(&interner, "income").unwrap().missing(), 2);
        assert_eq!(s.score().mean(), Some(0.8));
        assert_eq!(s.predicted_label().estimate("yes"), 2);
        assert_eq!(s.predicted_value().missing(), 2);
        assert_eq!(s.features().count(), 3);
    }
}
