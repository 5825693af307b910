//! Join progress records: how the join stage tells the monitor stage its event time.
//!
//! With every flush, after that flush's partials, the join stage writes one progress record
//! to every partition of the partials topic: the watermark of each of its tasks and how many
//! join tasks there are (the input partition count). The monitor's
//! [`JoinClock`](driftwatch_core::monitor::JoinClock) is the minimum of the latest watermarks
//! of all tasks; see `driftwatch_core::monitor::clock` for why verdicts then do not depend on
//! replay speed.
//!
//! On the topic a progress record has no key, the header [`HEADER`] = `progress`, and a JSON
//! value `{"tasks": 8, "watermarks": [[0, 1700000000000], [3, 1700000000500]]}` (task
//! partition, watermark in ms; `i64::MIN` before a task's watermark exists). The header keeps
//! it apart from partials without decoding; a monitor that does not know it counts it as an
//! undecodable partial.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use serde::{Deserialize, Serialize};

/// Header naming the kind of an internal record on the partials topic.
pub const HEADER: &str = "driftwatch.record";
/// [`HEADER`]'s value on progress records.
pub const PROGRESS: &str = "progress";

/// The watermarks of one join worker's tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinProgress {
    /// Join tasks in all: the input partition count.
    pub tasks: usize,
    /// (task partition, watermark ms) of this worker's tasks.
    pub watermarks: Vec<(i32, i64)>,
}

/// Why a progress record was refused.
#[derive(Debug, thiserror::Error)]
#[error("join progress record: {0}")]
pub struct ProgressError(#[from] serde_json::Error);

impl JoinProgress {
    /// The record's value.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of integers always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record's value.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProgressError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The headers of a progress record.
    pub fn headers() -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: HEADER,
            value: Some(PROGRESS),
        })
    }
}

/// Whether a record with these headers is a progress record.
pub fn is_progress(headers: Option<&impl Headers>) -> bool {
    headers.is_some_and(|h| {
        h.iter()
            .any(|x| x.key == HEADER && x.value == Some(PROGRESS.as_bytes()))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_is_recognized_by_its_header() {
        let p = JoinProgress {
            tasks: 8,
            watermarks: vec![(0, 1_700_000_000_000), (3, i64::MIN)],
        };
        assert_eq!(JoinProgress::decode(&p.encode()).unwrap(), p);
        assert!(is_progress(Some(&JoinProgress::headers())));
        assert!(!is_progress(None::<&OwnedHeaders>));
        let other = OwnedHeaders::new().insert(Header {
            key: HEADER,
            value: Some("partial"),
        });
        assert!(!is_progress(Some(&other)));
        assert!(JoinProgress::decode(b"{\"tasks\":1}").is_err());
    }
}
