//! Writer schemas from a Confluent-compatible Schema Registry, without I/O.
//!
//! A framed payload names its writer schema by id (`0x00`, 4-byte id, datum: [`crate::framing`]).
//! With a registry configured, an id the decoders do not know yet is looked up with
//! `GET /schemas/ids/{id}` ([`schema_path`]); this module reads the answer ([`interpret`]) and
//! keeps, per id, what is known about it ([`SchemaIds`]): fetched (its decoders are then built
//! by the caller), absent from the registry (its records are dead-lettered), or still being
//! fetched (its records wait: nothing is skipped). When to ask again after a failure is decided
//! here too, from times the caller passes in ([`SchemaIds::due`]); the HTTP request itself is
//! the worker's.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use apache_avro::Schema;
use serde::Deserialize;

use crate::error::CodecError;

/// The Confluent error code of "schema not found".
pub const SCHEMA_NOT_FOUND: u32 = 40403;

/// The request path of schema `id`, relative to the registry's base URL.
pub fn schema_path(id: u32) -> String {
    format!("/schemas/ids/{id}")
}

/// What one registry answer says about a schema id.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// The Avro writer schema of the id.
    Found(Schema),
    /// The registry has no such id, or what it has can never be read as Avro: its records are
    /// dead-lettered with this error.
    Absent(CodecError),
    /// Ask again later (server error, throttled, unauthorized, unreadable answer): records
    /// wait, none is dead-lettered.
    Retry(String),
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
    #[serde(rename = "schemaType", default)]
    schema_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<u32>,
    message: Option<String>,
}

/// Reads the registry's answer (HTTP `status` and `body`) to `GET /schemas/ids/{id}`.
pub fn interpret(id: u32, status: u16, body: &[u8]) -> Lookup {
    let error = serde_json::from_slice::<ErrorBody>(body).ok();
    let detail = error
        .as_ref()
        .map(|e| {
            format!(
                "{} {}",
                e.error_code.map(|c| c.to_string()).unwrap_or_default(),
                e.message.as_deref().unwrap_or("")
            )
            .trim()
            .to_owned()
        })
        .unwrap_or_default();
    let not_found = error.as_ref().and_then(|e| e.error_code) == Some(SCHEMA_NOT_FOUND);
    match status {
        200 => match serde_json::from_slice::<SchemaBody>(body) {
            Ok(b) => match b.schema_type.as_deref() {
                None | Some("AVRO") => {
                    match crate::schema::parse_named(&format!("registry id {id}"), &b.schema) {
                        Ok(s) => Lookup::Found(s),
                        Err(e) => Lookup::Absent(CodecError::RegistrySchema {
                            id,
                            reason: e.to_string(),
                        }),
                    }
                }
                Some(other) => Lookup::Absent(CodecError::RegistrySchema {
                    id,
                    reason: format!("the registry holds a {other} schema, not an Avro one"),
                }),
            },
            Err(e) => Lookup::Retry(format!("unreadable answer for schema id {id}: {e}")),
        },
        404 => Lookup::Absent(CodecError::RegistrySchema {
            id,
            reason: if detail.is_empty() {
                "not found in the schema registry (HTTP 404)".to_owned()
            } else {
                format!("not found in the schema registry ({detail})")
            },
        }),
        _ if not_found => Lookup::Absent(CodecError::RegistrySchema {
            id,
            reason: format!("not found in the schema registry ({detail})"),
        }),
        s => Lookup::Retry(
            format!("HTTP {s} for schema id {id} {detail}")
                .trim()
                .to_owned(),
        ),
    }
}

/// What the caller does with a record whose schema id its decoders do not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unknown {
    /// Dead-letter it with this error (the id is absent from the registry).
    DeadLetter(CodecError),
    /// Hold it (and its partition) until the id is fetched; a request is due or under way.
    Wait,
}

/// The state of one id that is not (yet) in the decoders.
#[derive(Debug, Clone)]
enum IdState {
    /// Being fetched: `in_flight` while a request is out; else the next try is due at
    /// `next_at` (ms) after `failures` failures, the last one `last_error`.
    Fetching {
        in_flight: bool,
        next_at: i64,
        failures: u32,
        last_error: Option<String>,
    },
    Absent(CodecError),
}

/// Per schema id: being fetched (with backoff) or known absent. Fetched schemas leave it (the
/// caller builds their decoders). Times are milliseconds of the caller's clock.
#[derive(Debug, Clone)]
pub struct SchemaIds {
    ids: BTreeMap<u32, IdState>,
    /// Absent ids in the order they were learned, to forget the oldest beyond `capacity`.
    absent_order: VecDeque<u32>,
    capacity: usize,
    min_backoff: Duration,
    max_backoff: Duration,
}

impl SchemaIds {
    /// Remembers at most `capacity` absent ids; retries back off from `min_backoff`, doubling up
    /// to `max_backoff`.
    pub fn new(capacity: usize, min_backoff: Duration, max_backoff: Duration) -> Self {
        SchemaIds {
            ids: BTreeMap::new(),
            absent_order: VecDeque::new(),
            capacity: capacity.max(1),
            min_backoff,
            max_backoff: max_backoff.max(min_backoff),
        }
    }

    /// A record names `id`, unknown to the decoders, at `now`.
    pub fn on_unknown(&mut self, id: u32, now: i64) -> Unknown {
        match self.ids.entry(id).or_insert(IdState::Fetching {
            in_flight: false,
            next_at: now,
            failures: 0,
            last_error: None,
        }) {
            IdState::Absent(e) => Unknown::DeadLetter(e.clone()),
            IdState::Fetching { .. } => Unknown::Wait,
        }
    }

    /// Ids whose request is due at `now`; each is marked in flight.
    pub fn due(&mut self, now: i64) -> Vec<u32> {
        let mut out = Vec::new();
        for (id, state) in &mut self.ids {
            if let IdState::Fetching {
                in_flight, next_at, ..
            } = state
            {
                if !*in_flight && *next_at <= now {
                    *in_flight = true;
                    out.push(*id);
                }
            }
        }
        out
    }

    /// The answer to `id`'s request arrived at `now`. Returns the schema when found (the id
    /// leaves the table: the caller builds its decoders).
    pub fn answered(&mut self, id: u32, lookup: Lookup, now: i64) -> Option<Schema> {
        match lookup {
            Lookup::Found(schema) => {
                self.ids.remove(&id);
                Some(schema)
            }
            Lookup::Absent(e) => {
                self.mark_absent(id, e);
                None
            }
            Lookup::Retry(reason) => {
                self.failed(id, reason, now);
                None
            }
        }
    }

    /// Records an absent id (also for a schema that was found but cannot be read).
    pub fn mark_absent(&mut self, id: u32, e: CodecError) {
        self.ids.insert(id, IdState::Absent(e));
        self.absent_order.push_back(id);
        while self.absent_order.len() > self.capacity {
            if let Some(old) = self.absent_order.pop_front() {
                if matches!(self.ids.get(&old), Some(IdState::Absent(_))) {
                    self.ids.remove(&old);
                }
            }
        }
    }

    fn failed(&mut self, id: u32, reason: String, now: i64) {
        let failures = match self.ids.get(&id) {
            Some(IdState::Fetching { failures, .. }) => failures.saturating_add(1),
            _ => 1,
        };
        let backoff = self
            .min_backoff
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let wait = i64::try_from(backoff.as_millis()).unwrap_or(i64::MAX);
        self.ids.insert(
            id,
            IdState::Fetching {
                in_flight: false,
                next_at: now.saturating_add(wait),
                failures,
                last_error: Some(reason),
            },
        );
    }

    /// Whether records are waiting for `id`.
    pub fn is_waiting(&self, id: u32) -> bool {
        matches!(self.ids.get(&id), Some(IdState::Fetching { .. }))
    }

    /// The last error of a fetch still failing, if any: the registry is not answering.
    pub fn failing(&self) -> Option<(u32, &str)> {
        self.ids.iter().find_map(|(id, s)| match s {
            IdState::Fetching {
                last_error: Some(e),
                ..
            } => Some((*id, e.as_str())),
            _ => None,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::schema::RecordKind;

    fn found(body: &str) -> Lookup {
        interpret(1, 200, body.as_bytes())
    }

    #[test]
    fn an_avro_schema_is_found_and_other_answers_are_classified() {
        let text = serde_json::to_string(RecordKind::Prediction.schema_text()).unwrap();
        assert!(matches!(
            found(&format!(r#"{{"schema":{text}}}"#)),
            Lookup::Found(_)
        ));
        assert!(matches!(
            found(&format!(r#"{{"schema":{text},"schemaType":"AVRO"}}"#)),
            Lookup::Found(_)
        ));
        let Lookup::Absent(e) = found(r#"{"schema":"{}","schemaType":"PROTOBUF"}"#) else {
            panic!("protobuf is not readable");
        };
        assert_eq!(e.kind(), "registry_schema");
        assert!(e.to_string().contains("PROTOBUF"), "{e}");
        assert!(matches!(
            found(r#"{"schema":"{\"type\":"}"#),
            Lookup::Absent(_)
        ));
        assert!(matches!(found("<html>"), Lookup::Retry(_)));

        let missing = interpret(
            7,
            404,
            br#"{"error_code":40403,"message":"Schema 7 not found"}"#,
        );
        let Lookup::Absent(e) = missing else {
            panic!("404 is absent");
        };
        assert!(e.to_string().contains("40403 Schema 7 not found"), "{e}");
        assert!(e.to_string().contains("schema id 7"), "{e}");
        assert!(matches!(interpret(7, 404, b""), Lookup::Absent(_)));
        // Some registries answer 40403 with another status.
        assert!(matches!(
            interpret(7, 422, br#"{"error_code":40403,"message":"x"}"#),
            Lookup::Absent(_)
        ));
        for status in [500, 502, 503, 504, 429, 401, 403, 408] {
            let Lookup::Retry(r) = interpret(7, status, br#"{"error_code":50001,"message":"db"}"#)
            else {
                panic!("{status} is retried");
            };
            assert!(r.contains(&status.to_string()), "{r}");
        }
    }

    #[test]
    fn an_unknown_id_waits_for_its_fetch_and_backs_off_while_the_registry_fails() {
        let mut ids = SchemaIds::new(10, Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(ids.on_unknown(5, 0), Unknown::Wait);
        assert_eq!(ids.on_unknown(5, 0), Unknown::Wait);
        assert_eq!(ids.due(0), vec![5]);
        assert!(ids.due(0).is_empty(), "one request at a time");
        assert!(ids.failing().is_none());
        assert!(ids
            .answered(5, Lookup::Retry("HTTP 503".into()), 1_000)
            .is_none());
        assert_eq!(ids.failing(), Some((5, "HTTP 503")));
        assert!(ids.due(1_099).is_empty());
        assert_eq!(ids.due(1_100), vec![5]);
        ids.answered(5, Lookup::Retry("down".into()), 2_000);
        assert!(ids.due(2_199).is_empty());
        assert_eq!(ids.due(2_200), vec![5]);
        ids.answered(5, Lookup::Retry("down".into()), 3_000);
        ids.answered(5, Lookup::Retry("down".into()), 3_000);
        assert!(ids.due(3_349).is_empty(), "capped at max_backoff");
        assert_eq!(ids.due(3_350), vec![5]);
        assert!(ids.is_waiting(5));
        let schema = RecordKind::Prediction.schema().unwrap().clone();
        assert!(ids.answered(5, Lookup::Found(schema), 4_000).is_some());
        assert!(!ids.is_waiting(5));
        assert!(ids.failing().is_none());
    }

    #[test]
    fn absent_ids_are_dead_lettered_and_only_the_newest_are_remembered() {
        let mut ids = SchemaIds::new(2, Duration::from_millis(1), Duration::from_millis(1));
        for id in [1, 2, 3] {
            assert_eq!(ids.on_unknown(id, 0), Unknown::Wait);
            let absent = CodecError::RegistrySchema {
                id,
                reason: "not found".into(),
            };
            ids.answered(id, Lookup::Absent(absent), 0);
        }
        let Unknown::DeadLetter(e) = ids.on_unknown(3, 0) else {
            panic!("3 is absent");
        };
        assert_eq!(e.kind(), "registry_schema");
        assert!(matches!(ids.on_unknown(2, 0), Unknown::DeadLetter(_)));
        // 1 was forgotten: asked again.
        assert_eq!(ids.on_unknown(1, 0), Unknown::Wait);
        assert_eq!(ids.due(0), vec![1]);
    }
}
