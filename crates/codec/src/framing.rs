//! Confluent Schema Registry framing, and picking the right decoder for a payload.
//!
//! A framed payload is `0x00`, a 4-byte big-endian schema id, then the Avro datum. Producers
//! using a registry serializer send framed payloads; others may send the bare datum of the
//! current schema. Both are accepted on the same topic with this rule: **a payload that starts
//! with `0x00` and is at least 5 bytes long is framed**. A bare `Prediction` or `GroundTruth`
//! datum cannot start with `0x00`, because its first field is the request id and a `0x00` there
//! would be a zero-length id, which is invalid.
//!
//! Decoders are built once per writer schema id ([`DecoderSet`]): for the ids registered into
//! [`WriterSchemas`] at start, and for ids added later with [`DecoderSet::insert`] (the worker
//! adds those it fetched from a schema registry, [`crate::registry`]). An id the set does not
//! hold is [`CodecError::UnknownSchemaId`]: the caller decides whether to dead-letter the
//! record or to fetch the id first.

use std::collections::HashMap;

use apache_avro::Schema;

use crate::borrowed::{GroundTruthDecoder, PredictionDecoder};
use crate::error::{CodecError, Result};

/// The magic byte that starts a Confluent-framed payload.
pub const MAGIC: u8 = 0;
/// Length of the framing header: magic byte plus schema id.
pub const HEADER_LEN: usize = 5;
/// Default largest payload accepted by a [`DecoderSet`].
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Prepends the framing header for `schema_id` to `datum`.
pub fn encode_framed(schema_id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Splits a framed payload into (schema id, datum); `None` when the payload is not framed.
pub fn split_framed(payload: &[u8]) -> Option<(u32, &[u8])> {
    match payload {
        [MAGIC, a, b, c, d, datum @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), datum)),
        _ => None,
    }
}

/// Writer schemas by registry id, registered from configuration.
#[derive(Debug, Default, Clone)]
pub struct WriterSchemas {
    by_id: HashMap<u32, Schema>,
}

impl WriterSchemas {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the schema of `id`.
    pub fn register(&mut self, id: u32, schema: Schema) {
        self.by_id.insert(id, schema);
    }

    /// Parses and registers a schema given as JSON text.
    pub fn register_json(&mut self, id: u32, text: &str) -> Result<()> {
        let schema = crate::schema::parse_named(&format!("schema id {id}"), text)?;
        self.register(id, schema);
        Ok(())
    }

    pub fn get(&self, id: u32) -> Result<&Schema> {
        self.by_id.get(&id).ok_or(CodecError::UnknownSchemaId(id))
    }

    pub fn iter(&self) -> impl Iterator<Item = (u32, &Schema)> {
        self.by_id.iter().map(|(id, s)| (*id, s))
    }
}

/// Builds a decoder from (writer, reader) schemas.
pub type BuildDecoder<D> = fn(&Schema, &Schema) -> Result<D>;

/// One decoder for bare datums plus one per registered writer schema id.
pub struct DecoderSet<D> {
    bare: D,
    by_id: HashMap<u32, D>,
    max_message_bytes: usize,
    reader: Schema,
    build: BuildDecoder<D>,
}

impl<D> DecoderSet<D> {
    /// Builds decoders for every registered writer schema with `build(writer, reader)`; bare
    /// datums are read as written with `reader` itself.
    pub fn build(reader: &Schema, writers: &WriterSchemas, build: BuildDecoder<D>) -> Result<Self> {
        let mut set = DecoderSet {
            bare: build(reader, reader)?,
            by_id: HashMap::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            reader: reader.clone(),
            build,
        };
        for (id, writer) in writers.iter() {
            set.insert(id, writer)?;
        }
        Ok(set)
    }

    /// Builds and adds the decoder of writer schema `id` (replacing any). A writer that cannot
    /// be read with the reader schema is [`CodecError::IncompatibleSchemas`], naming the id.
    pub fn insert(&mut self, id: u32, writer: &Schema) -> Result<()> {
        let decoder = (self.build)(writer, &self.reader).map_err(|e| match e {
            CodecError::IncompatibleSchemas(msg) => {
                CodecError::IncompatibleSchemas(format!("schema id {id}: {msg}"))
            }
            other => other,
        })?;
        self.by_id.insert(id, decoder);
        Ok(())
    }

    /// Removes the decoder of `id`, if any.
    pub fn remove(&mut self, id: u32) {
        self.by_id.remove(&id);
    }

    /// How many writer schema ids the set holds.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the set holds no writer schema id.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Sets the largest payload accepted.
    pub fn with_max_message_bytes(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    /// Picks the decoder for `payload` and returns it with the datum to decode.
    pub fn select<'p>(&self, payload: &'p [u8]) -> Result<(&D, &'p [u8])> {
        if payload.len() > self.max_message_bytes {
            return Err(CodecError::Oversized {
                size: payload.len(),
                limit: self.max_message_bytes,
            });
        }
        match split_framed(payload) {
            Some((id, datum)) => {
                let d = self.by_id.get(&id).ok_or(CodecError::UnknownSchemaId(id))?;
                Ok((d, datum))
            }
            None => Ok((&self.bare, payload)),
        }
    }
}

/// Decoders for payloads of topic `predictions`.
pub type PredictionDecoders = DecoderSet<PredictionDecoder>;
/// Decoders for payloads of topic `ground-truth`.
pub type GroundTruthDecoders = DecoderSet<GroundTruthDecoder>;

impl PredictionDecoders {
    /// Decoders reading with the current `Prediction` schema.
    pub fn for_writers(writers: &WriterSchemas) -> Result<Self> {
        Self::build(
            crate::schema::prediction()?,
            writers,
            PredictionDecoder::new,
        )
    }
}

impl GroundTruthDecoders {
    /// Decoders reading with the current `GroundTruth` schema.
    pub fn for_writers(writers: &WriterSchemas) -> Result<Self> {
        Self::build(
            crate::schema::ground_truth()?,
            writers,
            GroundTruthDecoder::new,
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::avro::to_avro;
    use crate::borrowed::IgnoreEntries;
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
    fn framing_round_trips_and_short_or_unframed_payloads_are_bare() {
        let framed = encode_framed(0x01020304, b"xyz");
        assert_eq!(&framed[..5], &[0, 1, 2, 3, 4]);
        assert_eq!(split_framed(&framed), Some((0x01020304, &b"xyz"[..])));
        assert_eq!(split_framed(&[0, 0, 0, 1]), None);
        assert_eq!(split_framed(&[2, 0, 0, 0, 1]), None);
        assert_eq!(split_framed(&[0, 0, 0, 0, 9]), Some((9, &[][..])));
    }

    #[test]
    fn a_bare_datum_never_looks_framed() {
        let datum = to_avro(&prediction()).unwrap();
        assert!(split_framed(&datum).is_none());
        let mut empty_id = prediction();
        empty_id.request_id.clear();
        assert!(to_avro(&empty_id).is_err());
    }

    #[test]
    fn decoder_set_picks_by_schema_id_and_rejects_unknown_ids_and_oversized_payloads() {
        let mut writers = WriterSchemas::new();
        writers
            .register_json(42, crate::schema::RecordKind::Prediction.schema_text())
            .unwrap();
        let set = PredictionDecoders::for_writers(&writers).unwrap();
        let p = prediction();
        let datum = to_avro(&p).unwrap();

        for payload in [datum.clone(), encode_framed(42, &datum)] {
            let (d, body) = set.select(&payload).unwrap();
            let head = d.decode(body, &mut IgnoreEntries).unwrap();
            assert_eq!(head.request_id, p.request_id);
        }
        let err = set
            .select(&encode_framed(7, &datum))
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err, CodecError::UnknownSchemaId(7));
        let mut grown = PredictionDecoders::for_writers(&writers).unwrap();
        grown
            .insert(7, crate::schema::prediction().unwrap())
            .unwrap();
        assert_eq!(grown.len(), 2);
        assert!(grown.select(&encode_framed(7, &datum)).is_ok());
        grown.remove(7);
        assert!(grown.select(&encode_framed(7, &datum)).is_err());
        let small = PredictionDecoders::for_writers(&writers)
            .unwrap()
            .with_max_message_bytes(datum.len() - 1);
        assert_eq!(
            small.select(&datum).map(|_| ()).unwrap_err().kind(),
            "oversized"
        );
    }

    #[test]
    fn ground_truth_decoders_reject_an_incompatible_registered_writer() {
        let mut writers = WriterSchemas::new();
        writers
            .register_json(
                3,
                r#"{"type":"record","name":"GroundTruth","fields":[{"name":"request_id","type":"long"}]}"#,
            )
            .unwrap();
        let err = GroundTruthDecoders::for_writers(&writers)
            .map(|_| ())
            .unwrap_err();
        assert_eq!(err.kind(), "incompatible_schemas");
        assert!(err.to_string().contains("schema id 3"), "{err}");
        let gt = GroundTruth {
            request_id: "r".into(),
            model_id: None,
            timestamp: 5,
            label: None,
            value: Some(1.0),
        };
        let ok = GroundTruthDecoders::for_writers(&WriterSchemas::new()).unwrap();
        let datum = to_avro(&gt).unwrap();
        let (d, body) = ok.select(&datum).unwrap();
        assert_eq!(d.decode_owned(body).unwrap(), gt);
    }
}
