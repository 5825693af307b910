//! Registering a writer schema with a Confluent-compatible Schema Registry, without I/O.
//!
//! A producer that frames its records (`0x00`, 4-byte id, datum: [`crate::framing`]) first
//! registers its writer schema under a subject — `POST /subjects/{subject}/versions` with
//! `{"schema": "<the schema's JSON>"}` ([`versions_path`], [`registration_body`]) — and frames
//! with the id the registry answers. Registering a schema the subject already holds returns
//! the same id, so every start registers again. The subject of a topic's values is
//! `<topic>-value` (the serializers' default `TopicNameStrategy`, [`value_subject`]). This
//! module builds the request and reads the answer ([`interpret_registration`]); the HTTP
//! request itself is the worker's.

use serde::Deserialize;

/// What one answer to a registration says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// The subject holds the schema under this id.
    Registered(u32),
    /// The registry refuses it, and asking again will not help (incompatible with the
    /// subject's compatibility rule, an invalid schema, credentials refused): fix and restart.
    Refused(String),
    /// Ask again later (server error, throttled, unreadable answer).
    Retry(String),
}

/// The subject of a topic's record values under the `TopicNameStrategy`.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// The request path registering a schema under `subject`, relative to the registry's base URL.
/// Bytes outside `[A-Za-z0-9._-]` (none in a Kafka topic name) are percent-encoded.
pub fn versions_path(subject: &str) -> String {
    let mut encoded = String::with_capacity(subject.len());
    for b in subject.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("/subjects/{encoded}/versions")
}

/// The request body registering the Avro schema `schema_text`.
pub fn registration_body(schema_text: &str) -> String {
    serde_json::json!({ "schema": schema_text }).to_string()
}

#[derive(Deserialize)]
struct Registered {
    id: u32,
}

#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<u32>,
    message: Option<String>,
}

/// What the answer (`status`, `body`) to registering under `subject` means.
pub fn interpret_registration(subject: &str, status: u16, body: &[u8]) -> Registration {
    if status == 200 {
        return match serde_json::from_slice::<Registered>(body) {
            Ok(r) => Registration::Registered(r.id),
            Err(e) => Registration::Retry(format!(
                "unreadable answer registering subject {subject}: {e}"
            )),
        };
    }
    let detail = serde_json::from_slice::<ErrorBody>(body)
        .map(|e| {
            format!(
                "{} {}",
                e.error_code.map(|c| c.to_string()).unwrap_or_default(),
                e.message.unwrap_or_default()
            )
            .trim()
            .to_owned()
        })
        .unwrap_or_default();
    let what = match status {
        401 | 403 => "the registry refused the credentials",
        409 => "the schema is incompatible with the subject's earlier versions",
        422 => "the registry rejected the schema",
        408 | 429 | 500..=599 => {
            return Registration::Retry(
                format!("HTTP {status} registering subject {subject} {detail}")
                    .trim()
                    .to_owned(),
            )
        }
        _ => "the registry refused the registration",
    };
    Registration::Refused(
        format!("{what} (subject {subject}, HTTP {status} {detail})").replace(" )", ")"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_request_of_the_topic_name_strategy() {
        assert_eq!(
            value_subject("driftwatch.retrain-events"),
            "driftwatch.retrain-events-value"
        );
        assert_eq!(
            versions_path("driftwatch.retrain-events-value"),
            "/subjects/driftwatch.retrain-events-value/versions"
        );
        assert_eq!(versions_path("a b/c"), "/subjects/a%20b%2Fc/versions");
        let body: serde_json::Value =
            serde_json::from_str(&registration_body("{\"type\":\"string\"}")).unwrap_or_default();
        assert_eq!(body["schema"], "{\"type\":\"string\"}");
    }

    #[test]
    fn reads_the_answers() {
        assert_eq!(
            interpret_registration("s", 200, br#"{"id":7}"#),
            Registration::Registered(7)
        );
        let Registration::Refused(r) = interpret_registration(
            "s",
            409,
            br#"{"error_code":409,"message":"Schema being registered is incompatible"}"#,
        ) else {
            panic!("409 is refused");
        };
        assert!(r.contains("incompatible") && r.contains("subject s"), "{r}");
        assert!(matches!(
            interpret_registration("s", 422, b"{}"),
            Registration::Refused(_)
        ));
        assert!(matches!(
            interpret_registration("s", 401, b""),
            Registration::Refused(_)
        ));
        assert!(matches!(
            interpret_registration("s", 503, b""),
            Registration::Retry(_)
        ));
        assert!(matches!(
            interpret_registration("s", 200, b"not json"),
            Registration::Retry(_)
        ));
    }
}
