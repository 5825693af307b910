//! A model's monitor state as changelog records, written incrementally: what the monitor stage
//! writes to its changelog.
//!
//! A model's state — every version's buckets, baseline, stream detectors, drift state machines,
//! signature tracker, and the model's retrain policy, with the [`ModelConfig`] it was built
//! under — is persisted as records keyed within the model:
//!
//! | part | key | value | written |
//! |---|---|---|---|
//! | head | model | config, policy, every version without its buckets and summaries, the tally of unversioned labels | when the model changed |
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

use super::{ModelConfig, ModelState, Monitor, PolicyState, UnversionedTally, VersionState};
use crate::TimestampMs;

/// Version of the record layout; bumped on any change to the state types.
pub const SNAPSHOT_FORMAT: u8 = 9;

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

type Head = (
    ModelConfig,
    BTreeMap<String, VersionState>,
    PolicyState,
    UnversionedTally,
);

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
        let head = (&m.config, &m.versions, &m.policy, &m.unversioned);
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
        let (config, mut versions, policy, mut unversioned): Head =
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
            unversioned.clear();
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
                unversioned,
                // A changed configuration restarted the windows: the new state must be written.
                dirty: config_changed,
            },
        );
        Ok(restored)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
