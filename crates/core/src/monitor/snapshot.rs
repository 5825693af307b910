//! A model's monitor state as changelog records, written incrementally: what the monitor stage
//! writes to its changelog.
//!
//! A model's state — every version's buckets, baseline, stream detectors, drift state machines,
//! signature tracker, and the model's retrain policy, with the [`ModelConfig`] it was built
//! under — is persisted as records keyed within the model:
//!
//! | part | key | value | written |
//! |---|---|---|---|
//! | head | model | config, policy, every version without its buckets and summaries | when the model changed |
//! | window bucket | model, version, bucket start | the merged partial and its `(source partition, sequence)` list | when the bucket changed; `None` once evicted |
//! | signature bucket | model, version, bucket start | the bucket's signature summary | when it changed; `None` once dropped |
//! | signature reference | model, version | the reference summary | while it is learned or when it is set |
//!
//! So a commit writes what changed — the head and the few buckets the latest partials touched
//! — not the whole state (megabytes for a day of one-minute buckets with a dozen features). A
//! compacted topic keeps the latest record per key; a worker that takes a model over imports
//! them and continues exactly where the previous owner's last transaction left it.
//!
//! Format: keys start with [`SNAPSHOT_FORMAT`] and the part, then the length-prefixed model id
//! (and version, and big-endian bucket start); values are serde in `postcard` (compact, f64 kept
//! bit for bit) or, for signatures, their own binary form. A head taken under another
//! configuration of the model (windows, detectors, thresholds changed since) keeps only its
//! policy: windows and detectors built for other settings would judge wrongly, so they start
//! over, and the model's other records are reported stale (to be deleted).

use std::collections::BTreeMap;

use super::{ModelConfig, ModelState, Monitor, PolicyState, VersionState};
use crate::TimestampMs;

/// Version of the record layout; bumped on any change to the state types.
pub const SNAPSHOT_FORMAT: u8 = 4;

/// Why state could not be written or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("monitor state key is empty or truncated")]
    BadKey,
    #[error("monitor state format {0} is not supported (this build reads {SNAPSHOT_FORMAT})")]
    UnsupportedFormat(u8),
    #[error("monitor state of `{model}` does not decode: {reason}")]
    Malformed { model: String, reason: String },
    #[error("monitor state of `{model}` does not encode: {reason}")]
    Encode { model: String, reason: String },
}

/// One changelog record: `None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// Which part of a model's state a record holds.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Part {
    Head,
    WindowBucket { version: String, start: TimestampMs },
    SignatureBucket { version: String, start: TimestampMs },
    SignatureReference { version: String },
}

impl Part {
    fn tag(&self) -> u8 {
        match self {
            Part::Head => 0,
            Part::WindowBucket { .. } => 1,
            Part::SignatureBucket { .. } => 2,
            Part::SignatureReference { .. } => 3,
        }
    }
}

fn push_str(key: &mut Vec<u8>, s: &str) {
    // Ids longer than 64 KiB are cut: they are refused upstream long before.
    let bytes = &s.as_bytes()[..s.len().min(usize::from(u16::MAX))];
    key.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    key.extend_from_slice(bytes);
}

fn encode_key(model: &str, part: &Part) -> Vec<u8> {
    let mut key = Vec::with_capacity(16 + model.len());
    key.push(SNAPSHOT_FORMAT);
    key.push(part.tag());
    push_str(&mut key, model);
    match part {
        Part::Head => {}
        Part::WindowBucket { version, start } | Part::SignatureBucket { version, start } => {
            push_str(&mut key, version);
            key.extend_from_slice(&start.to_be_bytes());
        }
        Part::SignatureReference { version } => push_str(&mut key, version),
    }
    key
}

struct KeyReader<'a>(&'a [u8]);

impl KeyReader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SnapshotError> {
        if self.0.len() < n {
            return Err(SnapshotError::BadKey);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.take(1)?[0])
    }

    fn str(&mut self) -> Result<String, SnapshotError> {
        let len = self.take(2)?;
        let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        String::from_utf8(self.take(len)?.to_vec()).map_err(|_| SnapshotError::BadKey)
    }

    fn i64(&mut self) -> Result<i64, SnapshotError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }
}

fn decode_key(key: &[u8]) -> Result<(String, Part), SnapshotError> {
    let mut r = KeyReader(key);
    let format = r.u8()?;
    if format != SNAPSHOT_FORMAT {
        return Err(SnapshotError::UnsupportedFormat(format));
    }
    let tag = r.u8()?;
    let model = r.str()?;
    let part = match tag {
        0 => Part::Head,
        1 => Part::WindowBucket {
            version: r.str()?,
            start: r.i64()?,
        },
        2 => Part::SignatureBucket {
            version: r.str()?,
            start: r.i64()?,
        },
        3 => Part::SignatureReference { version: r.str()? },
        _ => return Err(SnapshotError::BadKey),
    };
    if !r.0.is_empty() {
        return Err(SnapshotError::BadKey);
    }
    Ok((model, part))
}

/// The model id a state record belongs to (its changelog key names it).
pub fn model_of_key(key: &[u8]) -> Result<String, SnapshotError> {
    decode_key(key).map(|(model, _)| model)
}

/// The latest records of one model, as read from the changelog, to import.
#[derive(Debug, Default, Clone)]
pub struct ModelRecords {
    head: Option<Vec<u8>>,
    parts: Vec<(Part, Vec<u8>)>,
    keys: Vec<Vec<u8>>,
}

/// Records by model id, and the keys that did not decode with the reason.
pub type Grouped = (
    BTreeMap<String, ModelRecords>,
    Vec<(Vec<u8>, SnapshotError)>,
);

/// Groups the live records of a changelog (the latest value per key, deleted keys left out) by
/// model; a record whose key does not decode is returned apart with the reason.
pub fn group_records(records: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Grouped {
    let mut models: BTreeMap<String, ModelRecords> = BTreeMap::new();
    let mut bad = Vec::new();
    for (key, value) in records {
        match decode_key(&key) {
            Ok((model, part)) => {
                let m = models.entry(model).or_default();
                match part {
                    Part::Head => m.head = Some(value),
                    part => {
                        m.keys.push(key);
                        m.parts.push((part, value));
                    }
                }
            }
            Err(e) => bad.push((key, e)),
        }
    }
    (models, bad)
}

/// What [`Monitor::import_model`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub model_id: String,
    /// Versions restored (0 when the configuration changed).
    pub versions: usize,
    /// Records read besides the head.
    pub parts: usize,
    /// The head was taken under another configuration: only its policy was kept.
    pub config_changed: bool,
    /// Records of this model that no longer describe its state (the configuration changed, or
    /// they belong to no version of the head): the caller deletes them.
    pub stale_keys: Vec<Vec<u8>>,
}

type Head = (ModelConfig, BTreeMap<String, VersionState>, PolicyState);

impl Monitor {
    /// Models changed since their last export, in id order.
    pub fn dirty_models(&self) -> Vec<String> {
        self.models
            .iter()
            .filter(|(_, m)| m.dirty)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The records of what changed in one model since its last export (nothing for a model
    /// this monitor does not hold, or one unchanged); the model is clean afterwards.
    pub fn export_model(&mut self, model_id: &str) -> Result<Vec<StateRecord>, SnapshotError> {
        let Some(m) = self.models.get_mut(model_id) else {
            return Ok(Vec::new());
        };
        if !m.dirty {
            return Ok(Vec::new());
        }
        let fail = |reason: String| SnapshotError::Encode {
            model: model_id.to_owned(),
            reason,
        };
        let mut out = Vec::new();
        let head = (&m.config, &m.versions, &m.policy);
        out.push(StateRecord {
            key: encode_key(model_id, &Part::Head),
            value: Some(postcard::to_allocvec(&head).map_err(|e| fail(e.to_string()))?),
        });
        for (version, v) in &mut m.versions {
            let buckets = v
                .windows
                .take_changed_buckets()
                .map_err(|e| fail(e.to_string()))?;
            for (start, value) in buckets {
                let version = version.clone();
                out.push(StateRecord {
                    key: encode_key(model_id, &Part::WindowBucket { version, start }),
                    value,
                });
            }
            let changes = v
                .signatures
                .take_changes()
                .map_err(|e| fail(e.to_string()))?;
            for (start, value) in changes.buckets {
                let version = version.clone();
                out.push(StateRecord {
                    key: encode_key(model_id, &Part::SignatureBucket { version, start }),
                    value,
                });
            }
            if let Some(reference) = changes.reference {
                let version = version.clone();
                out.push(StateRecord {
                    key: encode_key(model_id, &Part::SignatureReference { version }),
                    value: Some(reference),
                });
            }
        }
        m.dirty = false;
        Ok(out)
    }

    /// Replaces a model's state by its records (see [`group_records`]).
    pub fn import_model(
        &mut self,
        model_id: &str,
        records: ModelRecords,
    ) -> Result<Restored, SnapshotError> {
        let fail = |reason: String| SnapshotError::Malformed {
            model: model_id.to_owned(),
            reason,
        };
        let Some(head) = records.head else {
            // Parts without a head: left behind by a head that was never committed, cannot be.
            return Err(fail("records without a head".into()));
        };
        let (config, mut versions, policy): Head =
            postcard::from_bytes(&head).map_err(|e| fail(e.to_string()))?;
        let current = self.config.for_model(model_id);
        let config_changed = config != current;
        let mut restored = Restored {
            model_id: model_id.to_owned(),
            versions: 0,
            parts: records.parts.len(),
            config_changed,
            stale_keys: Vec::new(),
        };
        if config_changed {
            versions.clear();
            restored.stale_keys = records.keys;
        } else {
            let mut with_reference = std::collections::BTreeSet::new();
            for ((part, value), key) in records.parts.into_iter().zip(records.keys) {
                let version = match &part {
                    Part::WindowBucket { version, .. }
                    | Part::SignatureBucket { version, .. }
                    | Part::SignatureReference { version } => version,
                    Part::Head => continue,
                };
                let Some(v) = versions.get_mut(version) else {
                    restored.stale_keys.push(key);
                    continue;
                };
                match part {
                    Part::WindowBucket { start, .. } => v
                        .windows
                        .restore_bucket(start, &value)
                        .map_err(|e| fail(format!("window bucket {start}: {e}")))?,
                    Part::SignatureBucket { start, .. } => v
                        .signatures
                        .restore_bucket(start, &value)
                        .map_err(|e| fail(format!("signature bucket {start}: {e}")))?,
                    Part::SignatureReference { version } => {
                        v.signatures
                            .restore_reference(&value)
                            .map_err(|e| fail(format!("signature reference: {e}")))?;
                        with_reference.insert(version);
                    }
                    Part::Head => {}
                }
            }
            if let Some((version, _)) = versions.iter().find(|(version, v)| {
                v.signatures.has_reference() && !with_reference.contains(*version)
            }) {
                return Err(fail(format!(
                    "version {version}: reference summary missing"
                )));
            }
            restored.versions = versions.len();
        }
        self.models.insert(
            model_id.to_owned(),
            ModelState {
                config: current,
                versions,
                policy,
                // A changed configuration restarted the windows: the new state must be written.
                dirty: config_changed,
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

    /// A compacted changelog: the latest value per key.
    type Changelog = BTreeMap<Vec<u8>, Vec<u8>>;

    /// Writes the changes of every dirty model, as a commit does; returns the records written.
    fn commit(m: &mut Monitor, log: &mut Changelog) -> usize {
        let mut n = 0;
        for model in m.dirty_models() {
            for r in m.export_model(&model).unwrap() {
                n += 1;
                match r.value {
                    Some(v) => log.insert(r.key, v),
                    None => log.remove(&r.key),
                };
            }
        }
        n
    }

    /// A fresh monitor restored from `log`.
    fn restore(log: &Changelog, config: MonitorConfig) -> (Monitor, Vec<Restored>) {
        let mut fresh = Monitor::new(config).unwrap();
        let (models, bad) = group_records(log.clone());
        assert!(bad.is_empty());
        let restored = models
            .into_iter()
            .map(|(model, records)| fresh.import_model(&model, records).unwrap())
            .collect();
        (fresh, restored)
    }

    /// Feeds `partials`, evaluating (and committing the changes to a changelog) after every
    /// `every`-th; at step `cut` (if any) the monitor is replaced by one restored from the
    /// changelog.
    fn replay(partials: &[ModelPartial], every: usize, cut: Option<usize>) -> MonitorOutput {
        let mut m = Monitor::new(config()).unwrap();
        let mut log = Changelog::new();
        let mut all = MonitorOutput::default();
        let mut progress = i64::MIN;
        for (i, p) in partials.iter().enumerate() {
            if Some(i) == cut {
                commit(&mut m, &mut log);
                let (fresh, restored) = restore(&log, config());
                assert!(restored
                    .iter()
                    .all(|r| !r.config_changed && r.stale_keys.is_empty()));
                m = fresh;
            }
            m.ingest(p).unwrap();
            progress = progress.max(p.bucket_start + p.bucket_width_ms);
            if i % every == every - 1 {
                let out = m.evaluate(progress);
                all.drift_events.extend(out.drift_events);
                all.retrain_events.extend(out.retrain_events);
                all.metrics.extend(out.metrics);
                commit(&mut m, &mut log);
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
        assert!(!m.export_model("a").unwrap().is_empty());
        assert!(m.dirty_models().is_empty());
        assert!(m.export_model("a").unwrap().is_empty());
        // Nothing new: an evaluation leaves it clean.
        m.evaluate(MIN);
        assert!(m.dirty_models().is_empty());
        m.ingest(&partial("a", 1, 2, 5, false)).unwrap();
        assert_eq!(m.dirty_models(), vec!["a".to_owned()]);
        assert!(m.export_model("unknown").unwrap().is_empty());
    }

    /// A commit writes what changed: the head and the buckets the latest partial touched, not
    /// the whole history; evicted buckets are deleted.
    #[test]
    fn commits_are_incremental() {
        let mut m = Monitor::new(config()).unwrap();
        let mut log = Changelog::new();
        let mut written = Vec::new();
        for (i, p) in traffic(120, 1000, 1000).iter().enumerate() {
            m.ingest(p).unwrap();
            if i % 2 == 1 {
                m.evaluate(p.bucket_start + MIN);
                written.push(commit(&mut m, &mut log));
            }
        }
        // Per model: head + window bucket + signature bucket (+ the reference while learned,
        // + evictions).
        assert!(written[100..].iter().all(|&n| n <= 2 * 6), "{written:?}");
        // Live keys stay bounded by the retained buckets: 30 min of window buckets, 10 of
        // signature buckets, a head and a reference per model.
        let live = log.len();
        assert!(live <= 2 * (2 + 31 + 11), "{live} live keys");
        let (_, restored) = restore(&log, config());
        assert_eq!(restored.len(), 2);
    }

    #[test]
    fn a_changed_configuration_keeps_only_the_policy() {
        let mut m = Monitor::new(config()).unwrap();
        let mut log = Changelog::new();
        for (i, p) in traffic(120, 60, 1000).iter().enumerate() {
            m.ingest(p).unwrap();
            if i % 4 == 3 {
                m.evaluate(p.bucket_start + MIN);
            }
        }
        commit(&mut m, &mut log);
        let policy = m.policy_state("drifting").unwrap().clone();
        assert!(policy.emitted > 0);
        let mut other = config();
        other.default.windows = vec!["10m".into(), "20m".into()];
        let (fresh, restored) = restore(&log, other);
        let r = restored.iter().find(|r| r.model_id == "drifting").unwrap();
        assert!(r.config_changed);
        assert_eq!(r.versions, 0);
        assert_eq!(r.stale_keys.len(), r.parts);
        assert!(r.parts > 0);
        assert_eq!(fresh.policy_state("drifting"), Some(&policy));
        assert!(fresh.window_stats("drifting", "v1").is_none());
        assert_eq!(
            fresh.dirty_models().len(),
            2,
            "the new state must be written"
        );
    }

    #[test]
    fn malformed_records_are_refused_without_panic() {
        let mut m = Monitor::new(config()).unwrap();
        let mut log = Changelog::new();
        m.ingest(&partial("a", 0, 1, 5, true)).unwrap();
        commit(&mut m, &mut log);
        assert_eq!(model_of_key(&[]), Err(SnapshotError::BadKey));
        assert_eq!(
            model_of_key(&[9, 0, 0, 1, b'a']),
            Err(SnapshotError::UnsupportedFormat(9))
        );
        for (key, value) in &log {
            assert_eq!(model_of_key(key).unwrap(), "a");
            for len in 0..key.len() {
                assert!(model_of_key(&key[..len]).is_err(), "key prefix {len}");
            }
            for len in 0..value.len() {
                let mut cut = log.clone();
                cut.insert(key.clone(), value[..len].to_vec());
                let (models, _) = group_records(cut);
                let mut fresh = Monitor::new(config()).unwrap();
                for (model, records) in models {
                    // Refused or a state; never a panic.
                    let _ = fresh.import_model(&model, records);
                }
            }
        }
        // A bucket without its head is refused.
        let (mut models, _) = group_records(
            log.iter()
                .filter(|(k, _)| k[1] != 0)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let mut fresh = Monitor::new(config()).unwrap();
        let records = models.remove("a").unwrap();
        assert!(fresh.import_model("a", records).is_err());
    }
}
