//! A model's whole monitor state as bytes: what the monitor stage writes to its changelog.
//!
//! One snapshot per model holds everything the monitor learned of it — every version's buckets,
//! baseline, stream detectors, drift state machines, signature tracker — and its retrain
//! policy, together with the [`ModelConfig`] it was built with. A worker that takes a model
//! over imports the last committed snapshot and continues exactly where the previous owner's
//! last transaction left it: the partials it then reads are the ones that snapshot had not
//! merged, so nothing is merged twice or missed, and the same transitions give the same event
//! ids.
//!
//! Format: one byte [`SNAPSHOT_FORMAT`], then the serde form in `postcard` (compact, and f64
//! kept bit for bit, so a restored detector computes exactly what the original would have).
//! Signatures are stored in their own binary form, whose sketches round-trip; the rest is
//! plain data.
//!
//! A snapshot taken under another configuration of the model (windows, detectors, thresholds
//! changed since) keeps only its policy: windows and detectors built for other settings would
//! judge wrongly, so they start over, as for a new model.

use std::collections::BTreeMap;

use super::{ModelConfig, ModelState, Monitor, PolicyState, VersionState};

/// Version of the snapshot layout; bumped on any change to the state types.
pub const SNAPSHOT_FORMAT: u8 = 1;

/// Why a snapshot could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("empty model snapshot")]
    Empty,
    #[error("model snapshot format {0} is not supported (this build reads {SNAPSHOT_FORMAT})")]
    UnsupportedFormat(u8),
    #[error("model snapshot does not decode: {0}")]
    Malformed(String),
    #[error("model snapshot of `{model}` does not encode: {reason}")]
    Encode { model: String, reason: String },
}

/// What [`Monitor::import_model`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub model_id: String,
    /// Versions restored (0 when the configuration changed).
    pub versions: usize,
    /// The snapshot was taken under another configuration: only its policy was kept.
    pub config_changed: bool,
}

impl Monitor {
    /// Models changed since their last export, in id order.
    pub fn dirty_models(&self) -> Vec<String> {
        self.models
            .iter()
            .filter(|(_, m)| m.dirty)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The snapshot of one model (`None` for a model this monitor does not hold); the model is
    /// clean afterwards.
    pub fn export_model(&mut self, model_id: &str) -> Result<Option<Vec<u8>>, SnapshotError> {
        let Some(m) = self.models.get_mut(model_id) else {
            return Ok(None);
        };
        let mut bytes = vec![SNAPSHOT_FORMAT];
        let body = (model_id, &m.config, &m.versions, &m.policy);
        let bytes = postcard::to_extend(&body, std::mem::take(&mut bytes)).map_err(|e| {
            SnapshotError::Encode {
                model: model_id.to_owned(),
                reason: e.to_string(),
            }
        })?;
        m.dirty = false;
        Ok(Some(bytes))
    }

    /// Replaces a model's state by a snapshot of [`export_model`](Self::export_model).
    pub fn import_model(&mut self, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        let (&format, body) = bytes.split_first().ok_or(SnapshotError::Empty)?;
        if format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::UnsupportedFormat(format));
        }
        type Body = (
            String,
            ModelConfig,
            BTreeMap<String, VersionState>,
            PolicyState,
        );
        let (model_id, config, versions, policy): Body =
            postcard::from_bytes(body).map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        let current = self.config.for_model(&model_id);
        let config_changed = config != current;
        let versions = if config_changed {
            BTreeMap::new()
        } else {
            versions
        };
        let restored = Restored {
            model_id: model_id.clone(),
            versions: versions.len(),
            config_changed,
        };
        self.models.insert(
            model_id,
            ModelState {
                config: current,
                versions,
                policy,
                dirty: false,
            },
        );
        Ok(restored)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::join::partial::empty_partial;
    use crate::monitor::{MonitorConfig, MonitorOutput};
    use crate::summary::{FeatureInterner, SignatureSummary};
    use crate::{ConfusionCell, ModelPartial};

    const MIN: i64 = 60_000;

    fn config() -> MonitorConfig {
        let mut c = MonitorConfig::default();
        c.default.maturity_ms = 2 * MIN;
        c.default.windows = vec!["10m".into(), "30m".into()];
        c.default.accuracy_drop.window = "10m".into();
        c.default.feature_drift.window = "10m".into();
        c.default.feature_drift.reference = "10m".into();
        c
    }

    /// A minute's partial of `model`: `wrong` of 100 outcomes wrong, and a signature of 20
    /// values of feature `x`, which moves when `shifted`. A window holds 200 values, fewer than
    /// the KLL sketches' `k`: they never compact, so their statistics are exact. (Compaction
    /// keeps one of two items by a random bit of a thread-local generator: with more values,
    /// the low digits of a p-value vary from run to run, restored or not.)
    fn partial(model: &str, minute: i64, seq: u64, wrong: u64, shifted: bool) -> ModelPartial {
        let mut p = empty_partial(model, "v1", minute * MIN, MIN, (seq % 2) as i32);
        p.sequence = seq;
        p.counters.predictions = 100;
        p.counters.matched = 100;
        p.confusion = vec![
            ConfusionCell {
                predicted: "a".into(),
                actual: "a".into(),
                count: 100 - wrong,
            },
            ConfusionCell {
                predicted: "a".into(),
                actual: "b".into(),
                count: wrong,
            },
        ];
        let mut names = FeatureInterner::new();
        let x = names.intern("x").unwrap();
        let mut sig = SignatureSummary::new();
        for i in 0..20 {
            sig.update_number(x, f64::from(i) * 5.0 + if shifted { 60.0 } else { 0.0 });
            sig.update_output(Some("a"), None, Some(0.7));
        }
        p.signature = Some(sig.to_bytes(&names).unwrap());
        p
    }

    /// The partials of two models over `minutes`, in arrival order: `drifting` loses accuracy
    /// and its feature shifts from minute `change` on; some partials come twice.
    fn traffic(minutes: i64, change: i64, dup_every: u64) -> Vec<ModelPartial> {
        let mut out = Vec::new();
        let mut seq = 0;
        for t in 0..minutes {
            for (model, drifts) in [("drifting", true), ("stable", false)] {
                let after = drifts && t >= change;
                let wrong = if after { 35 } else { 5 + (t % 3) as u64 };
                seq += 1;
                let p = partial(model, t, seq, wrong, after);
                if seq % dup_every == 0 {
                    out.push(p.clone());
                }
                out.push(p);
            }
        }
        out
    }

    /// Feeds `partials`, evaluating after every `every`-th; at step `cut` (if any) the monitor
    /// is replaced by a fresh one that imports every model's snapshot.
    fn replay(partials: &[ModelPartial], every: usize, cut: Option<usize>) -> MonitorOutput {
        let mut m = Monitor::new(config()).unwrap();
        let mut all = MonitorOutput::default();
        let mut progress = i64::MIN;
        for (i, p) in partials.iter().enumerate() {
            if Some(i) == cut {
                let mut fresh = Monitor::new(config()).unwrap();
                for model in m.dirty_models() {
                    let bytes = m.export_model(&model).unwrap().unwrap();
                    let r = fresh.import_model(&bytes).unwrap();
                    assert_eq!(r.model_id, model);
                    assert!(!r.config_changed);
                }
                m = fresh;
            }
            m.ingest(p).unwrap();
            progress = progress.max(p.bucket_start + p.bucket_width_ms);
            if i % every == every - 1 {
                let out = m.evaluate(progress);
                all.drift_events.extend(out.drift_events);
                all.retrain_events.extend(out.retrain_events);
                all.metrics.extend(out.metrics);
            }
        }
        all
    }

    /// The first position where two outputs differ, for a readable failure.
    fn first_difference<T: PartialEq + std::fmt::Debug>(a: &[T], b: &[T]) -> Option<String> {
        if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
            return Some(format!("at {i}: {:?}\n  vs {:?}", a[i], b[i]));
        }
        (a.len() != b.len()).then(|| format!("lengths {} vs {}", a.len(), b.len()))
    }

    #[test]
    fn the_scenario_drifts_so_the_property_below_has_something_to_compare() {
        let out = replay(&traffic(120, 60, 7), 4, None);
        assert!(out
            .drift_events
            .iter()
            .any(|e| e.model_id == "drifting" && e.detector == "accuracy_drop"));
        assert!(out.drift_events.iter().any(|e| e.feature.is_some()));
        assert!(!out.drift_events.iter().any(|e| e.model_id == "stable"));
        assert_eq!(out.retrain_events.len(), 1, "{:?}", out.retrain_events);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Export, import into a fresh monitor, continue: the same events (same ids), the same
        /// retrain advice and the same metrics as a monitor that never stopped.
        #[test]
        fn a_restored_monitor_continues_exactly(
            cut in 0usize..480,
            every in 1usize..9,
            dup_every in 3u64..20,
        ) {
            let partials = traffic(120, 60, dup_every);
            let cut = cut % partials.len();
            let uninterrupted = replay(&partials, every, None);
            let restored = replay(&partials, every, Some(cut));
            prop_assert_eq!(first_difference(&uninterrupted.drift_events, &restored.drift_events), None);
            prop_assert_eq!(first_difference(&uninterrupted.retrain_events, &restored.retrain_events), None);
            prop_assert_eq!(first_difference(&uninterrupted.metrics, &restored.metrics), None);
        }
    }

    #[test]
    fn clean_after_export_dirty_after_ingest() {
        let mut m = Monitor::new(config()).unwrap();
        m.ingest(&partial("a", 0, 1, 5, false)).unwrap();
        assert_eq!(m.dirty_models(), vec!["a".to_owned()]);
        m.export_model("a").unwrap().unwrap();
        assert!(m.dirty_models().is_empty());
        // Nothing new: an evaluation leaves it clean.
        m.evaluate(MIN);
        assert!(m.dirty_models().is_empty());
        m.ingest(&partial("a", 1, 2, 5, false)).unwrap();
        assert_eq!(m.dirty_models(), vec!["a".to_owned()]);
        assert_eq!(m.export_model("unknown").unwrap(), None);
    }

    #[test]
    fn a_changed_configuration_keeps_only_the_policy() {
        let mut m = Monitor::new(config()).unwrap();
        for (i, p) in traffic(120, 60, 1000).iter().enumerate() {
            m.ingest(p).unwrap();
            if i % 4 == 3 {
                m.evaluate(p.bucket_start + MIN);
            }
        }
        let policy = m.policy_state("drifting").unwrap().clone();
        assert!(policy.emitted > 0);
        let bytes = m.export_model("drifting").unwrap().unwrap();
        let mut other = config();
        other.default.windows = vec!["10m".into(), "20m".into()];
        let mut fresh = Monitor::new(other).unwrap();
        let r = fresh.import_model(&bytes).unwrap();
        assert!(r.config_changed);
        assert_eq!(r.versions, 0);
        assert_eq!(fresh.policy_state("drifting"), Some(&policy));
        assert!(fresh.window_stats("drifting", "v1").is_none());
    }

    #[test]
    fn malformed_snapshots_are_refused_without_panic() {
        let mut m = Monitor::new(config()).unwrap();
        m.ingest(&partial("a", 0, 1, 5, true)).unwrap();
        let bytes = m.export_model("a").unwrap().unwrap();
        let mut fresh = Monitor::new(config()).unwrap();
        assert_eq!(fresh.import_model(&[]), Err(SnapshotError::Empty));
        assert_eq!(
            fresh.import_model(&[9, 1, 2]),
            Err(SnapshotError::UnsupportedFormat(9))
        );
        for len in 1..bytes.len() {
            assert!(fresh.import_model(&bytes[..len]).is_err(), "prefix {len}");
        }
        let mut flipped = bytes.clone();
        for i in (1..flipped.len()).step_by(7) {
            flipped[i] ^= 0x5a;
            // Either refused or a state; never a panic.
            let _ = fresh.import_model(&flipped);
        }
        assert!(fresh.import_model(&bytes).is_ok());
    }
}
