//! Which encoding a payload on an input topic is in, told from its first bytes.
//!
//! The input topics accept three forms side by side, so producers can move from one to another
//! without a flag day:
//!
//! | first bytes | form | read by |
//! |---|---|---|
//! | `{` | JSON object (`schemas/README.md`) | [`crate::json`] |
//! | `0x00` + 4-byte schema id, ≥ 5 bytes | Confluent-framed Avro datum | [`crate::framing`] |
//! | anything else | bare Avro datum of the current schema | [`crate::borrowed`] |
//!
//! The forms cannot be mistaken for one another because a `Prediction` or `GroundTruth` datum
//! starts with the request id's length, a zigzag varint: `0x00` would be an empty id (invalid),
//! and `{` (0x7b) a negative length (−62). So the first byte decides, without decoding.

use crate::framing::split_framed;

/// The encoding of an input payload (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    /// A JSON object.
    Json,
    /// A Confluent-framed Avro datum written with registry schema `schema_id`.
    Framed { schema_id: u32 },
    /// A bare Avro datum of the current schema.
    BareAvro,
}

impl PayloadFormat {
    /// Tells a payload's encoding from its first bytes.
    #[inline]
    pub fn detect(payload: &[u8]) -> Self {
        if payload.first() == Some(&b'{') {
            return PayloadFormat::Json;
        }
        match split_framed(payload) {
            Some((schema_id, _)) => PayloadFormat::Framed { schema_id },
            None => PayloadFormat::BareAvro,
        }
    }

    /// Whether the payload is Avro (framed or bare): read by a [`crate::DecoderSet`].
    pub fn is_avro(self) -> bool {
        !matches!(self, PayloadFormat::Json)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{encode_framed, to_avro, to_json};
    use driftwatch_core::{GroundTruth, Prediction};

    fn prediction() -> Prediction {
        Prediction {
            request_id: "r-1".into(),
            model_id: "m".into(),
            model_version: "v1".into(),
            timestamp: 1_700_000_000_000,
            features: vec![],
            predicted_label: Some("cat".into()),
            predicted_value: None,
            scores: None,
            tags: vec![],
        }
    }

    #[test]
    fn each_form_of_a_record_is_told_by_its_first_bytes() {
        let p = prediction();
        let datum = to_avro(&p).unwrap();
        assert_eq!(PayloadFormat::detect(&datum), PayloadFormat::BareAvro);
        assert_eq!(
            PayloadFormat::detect(&encode_framed(42, &datum)),
            PayloadFormat::Framed { schema_id: 42 }
        );
        let json = to_json(&p).unwrap();
        assert_eq!(PayloadFormat::detect(json.as_bytes()), PayloadFormat::Json);
        let label = GroundTruth {
            request_id: "r-1".into(),
            model_id: None,
            timestamp: 5,
            label: None,
            value: Some(1.0),
        };
        assert_eq!(
            PayloadFormat::detect(&to_avro(&label).unwrap()),
            PayloadFormat::BareAvro
        );
        assert_eq!(
            PayloadFormat::detect(to_json(&label).unwrap().as_bytes()),
            PayloadFormat::Json
        );
    }

    #[test]
    fn short_empty_and_unknown_payloads_go_to_the_bare_avro_decoder_which_refuses_them() {
        for payload in [&[][..], &[0, 0, 0, 1][..], b"[1, 2]", b" {}"] {
            assert_eq!(PayloadFormat::detect(payload), PayloadFormat::BareAvro);
            assert!(PayloadFormat::detect(payload).is_avro());
        }
        assert!(!PayloadFormat::Json.is_avro());
    }
}
