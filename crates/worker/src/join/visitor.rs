//! The decode visitors of the Avro fast path: what the decoder hands over while it reads a
//! prediction, before the model and prediction time (which come later in the datum) are
//! known.
//!
//! [`SignatureOfPredicted`] interns each feature name into the task's [`FeatureInterner`] (a
//! byte compare when the name is where it was in the previous message, a hash lookup
//! otherwise; allocating only for a new name) and stages the value with its id;
//! [`ScoreOfPredicted`] keeps the class scores. Once the prediction is accepted, the staged
//! values and its output go into its bucket's signature ([`stage_into_signature`]). Both
//! buffers are recycled across messages ([`recycle`], [`recycle_scores`]), so the hot path
//! allocates nothing per message.

use driftwatch_codec::borrowed::{FeatureRef, NotUtf8, PredictionVisitor};
use driftwatch_core::summary::{FeatureId, FeatureInterner, SignatureSummary};

/// Keeps the class scores of a prediction so the predicted class's score can be looked up
/// once the whole datum is read (the predicted label may come after the scores).
#[derive(Default)]
pub(super) struct ScoreOfPredicted<'a> {
    pub(super) scores: Vec<(&'a str, f64)>,
}

impl ScoreOfPredicted<'_> {
    pub(super) fn score_of(&self, class: &str) -> Option<f32> {
        self.score_f64(class).map(|p| p as f32)
    }

    pub(super) fn score_f64(&self, class: &str) -> Option<f64> {
        self.scores
            .iter()
            .find(|(c, _)| *c == class)
            .map(|(_, p)| *p)
    }
}

/// [`recycle`] for the class-score buffer.
pub(super) fn recycle_scores<'b>(mut scores: Vec<(&str, f64)>) -> Vec<(&'b str, f64)> {
    scores.clear();
    scores.into_iter().map(|(_, p)| ("", p)).collect()
}

/// Reuses an empty staging buffer's allocation for another lifetime: collecting an emptied
/// `vec::IntoIter` into a vector of a same-layout element type is done in place by the
/// standard library, so no allocation happens per message (and if it ever were not, it would
/// only cost one).
pub(super) fn recycle<'b>(
    mut staged: Vec<(FeatureId, FeatureRef<'_>)>,
) -> Vec<(FeatureId, FeatureRef<'b>)> {
    staged.clear();
    staged
        .into_iter()
        .map(|(id, _)| (id, FeatureRef::Missing))
        .collect()
}

/// Adds an accepted prediction to its bucket's signature: each staged feature value, then the
/// output (predicted label or value, and the predicted class's score).
pub(super) fn stage_into_signature(
    sig: &mut SignatureSummary,
    staged: &[(FeatureId, FeatureRef<'_>)],
    predicted_label: Option<&str>,
    predicted_value: Option<f64>,
    score: Option<f64>,
) {
    for &(id, value) in staged {
        match value {
            FeatureRef::Missing => sig.update_missing(id),
            FeatureRef::Number(x) => sig.update_number(id, x),
            FeatureRef::Category(c) => sig.update_category(id, c),
        }
    }
    sig.update_output(predicted_label, predicted_value, score);
}

/// The [`PredictionVisitor`] of the fast path (see the module docs).
pub(super) struct SignatureOfPredicted<'a, 't> {
    pub(super) names: &'t mut FeatureInterner,
    pub(super) hints: &'t mut Vec<FeatureId>,
    pub(super) staged: Vec<(FeatureId, FeatureRef<'a>)>,
    /// Features skipped because the interner is full.
    pub(super) dropped: u64,
    pub(super) scores: ScoreOfPredicted<'a>,
}

impl<'a> PredictionVisitor<'a> for SignatureOfPredicted<'a, '_> {
    #[inline]
    fn feature(&mut self, name: &'a str, value: FeatureRef<'a>) {
        let position = self.staged.len();
        // An out-of-range id never matches, so a missing hint falls back to the lookup.
        let hint = self
            .hints
            .get(position)
            .copied()
            .unwrap_or(FeatureId(u16::MAX));
        match self.names.intern_hinted(name, hint) {
            Ok(id) => {
                match self.hints.get_mut(position) {
                    Some(h) => *h = id,
                    None => self.hints.push(id),
                }
                self.staged.push((id, value));
            }
            Err(_) => self.dropped += 1,
        }
    }

    /// Names arrive in the same order message after message: a name byte-equal to the one
    /// interned at this position needs neither a UTF-8 check nor a hash lookup.
    #[inline]
    fn feature_bytes(&mut self, name: &'a [u8], value: FeatureRef<'a>) -> Result<(), NotUtf8> {
        let position = self.staged.len();
        if let Some(id) = self
            .hints
            .get(position)
            .and_then(|h| self.names.hinted(name, *h))
        {
            self.staged.push((id, value));
            return Ok(());
        }
        let name = std::str::from_utf8(name).map_err(|_| NotUtf8)?;
        self.feature(name, value);
        Ok(())
    }

    #[inline]
    fn score(&mut self, class: &'a str, p: f64) {
        self.scores.score(class, p);
    }
}

impl<'a> PredictionVisitor<'a> for ScoreOfPredicted<'a> {
    fn feature(&mut self, _name: &'a str, _value: FeatureRef<'a>) {}

    fn score(&mut self, class: &'a str, p: f64) {
        self.scores.push((class, p));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use driftwatch_codec::{to_avro, PredictionDecoder};
    use driftwatch_core::join::{Interner, PartialAggregator};
    use driftwatch_core::{FeatureValue, ModelPartial, Prediction};

    fn prediction(features: Vec<(&str, FeatureValue)>) -> Prediction {
        Prediction {
            request_id: "r1".into(),
            model_id: "fraud".into(),
            model_version: "v1".into(),
            timestamp: 90_000,
            features: features
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v))
                .collect(),
            predicted_label: Some("yes".into()),
            predicted_value: None,
            scores: Some(vec![("no".into(), 0.25), ("yes".into(), 0.75)]),
            tags: vec![],
        }
    }

    #[test]
    fn the_visitor_stages_interned_features_and_keeps_scores() {
        let decoder = PredictionDecoder::current().unwrap();
        let mut names = FeatureInterner::new();
        let mut hints = Vec::new();
        let mut buffer: Vec<(FeatureId, FeatureRef<'static>)> = Vec::with_capacity(8);
        let capacity = buffer.capacity();
        let first = to_avro(&prediction(vec![
            ("age", FeatureValue::Number(42.0)),
            ("country", FeatureValue::Category("FR".into())),
            ("income", FeatureValue::Missing),
        ]))
        .unwrap();
        // Another order and a new name: hints miss, ids stay the same.
        let second = to_avro(&prediction(vec![
            ("country", FeatureValue::Category("DE".into())),
            ("age", FeatureValue::Number(7.0)),
            ("tenure", FeatureValue::Number(1.0)),
        ]))
        .unwrap();
        let mut ids = Vec::new();
        for datum in [&first, &second] {
            let mut v = SignatureOfPredicted {
                names: &mut names,
                hints: &mut hints,
                staged: recycle(std::mem::take(&mut buffer)),
                dropped: 0,
                scores: ScoreOfPredicted::default(),
            };
            let p = decoder.decode(datum, &mut v).unwrap();
            assert_eq!(p.model_id, "fraud");
            assert_eq!(v.scores.score_f64("yes"), Some(0.75));
            assert_eq!(v.dropped, 0);
            ids.push(v.staged.clone());
            buffer = recycle(v.staged);
            assert!(buffer.is_empty());
            assert_eq!(buffer.capacity(), capacity, "the buffer is reused");
        }
        let id = |n: &str| names.get(n).unwrap();
        assert_eq!(
            ids[0],
            vec![
                (id("age"), FeatureRef::Number(42.0)),
                (id("country"), FeatureRef::Category("FR")),
                (id("income"), FeatureRef::Missing),
            ]
        );
        assert_eq!(
            ids[1],
            vec![
                (id("country"), FeatureRef::Category("DE")),
                (id("age"), FeatureRef::Number(7.0)),
                (id("tenure"), FeatureRef::Number(1.0)),
            ]
        );
        assert_eq!(hints, vec![id("country"), id("age"), id("tenure")]);
    }

    #[test]
    fn a_full_interner_drops_new_features_only() {
        let decoder = PredictionDecoder::current().unwrap();
        let mut names = FeatureInterner::with_limit(1);
        let mut hints = Vec::new();
        let datum = to_avro(&prediction(vec![
            ("age", FeatureValue::Number(1.0)),
            ("country", FeatureValue::Category("FR".into())),
        ]))
        .unwrap();
        let mut v = SignatureOfPredicted {
            names: &mut names,
            hints: &mut hints,
            staged: Vec::new(),
            dropped: 0,
            scores: ScoreOfPredicted::default(),
        };
        decoder.decode(&datum, &mut v).unwrap();
        assert_eq!(v.dropped, 1);
        assert_eq!(v.staged.len(), 1);
    }

    /// What a flush sends: the staged values, applied as the intake does, come out as the
    /// partial's signature.
    #[test]
    fn staged_values_reach_the_flushed_signature() {
        let mut interner = Interner::new();
        let model = interner.intern_model("fraud", "v1").unwrap();
        let mut agg = PartialAggregator::new(0, 60_000).unwrap();
        let age = agg.features_mut().intern("age").unwrap();
        let staged = [(age, FeatureRef::Number(3.0)), (age, FeatureRef::Missing)];
        let sig = agg.signature_mut(model, 61_000);
        stage_into_signature(sig, &staged, Some("yes"), None, Some(0.75));
        let out = agg.flush(&interner, i64::MIN);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bucket_start, 60_000);
        let mut names = FeatureInterner::new();
        let s =
            SignatureSummary::from_bytes(out[0].signature.as_deref().unwrap(), &mut names).unwrap();
        let f = s.feature_by_name(&names, "age").unwrap();
        assert_eq!((f.count(), f.missing()), (1, 1));
        assert_eq!(s.score().mean(), Some(0.75));
        // Round trip through the wire form the monitor reads.
        let back: ModelPartial = driftwatch_codec::from_avro(&to_avro(&out[0]).unwrap()).unwrap();
        assert_eq!(back, out[0]);
    }
}
