//! Arbitrary bytes into the Prediction decoders (Avro fast path, framed selection, JSON): they
//! may fail, never panic, and what decodes must re-encode to canonical bytes that decode to the
//! same record.
#![no_main]

use std::sync::LazyLock;

use driftwatch_codec::borrowed::IgnoreEntries;
use driftwatch_codec::{
    decode_prediction, from_json_slice, to_avro, PredictionDecoders, RecordKind, WriterSchemas,
};
use driftwatch_core::Prediction;
use libfuzzer_sys::fuzz_target;

/// Built once: decoders for bare datums and for one registered schema id (1).
static DECODERS: LazyLock<PredictionDecoders> = LazyLock::new(|| {
    let mut writers = WriterSchemas::new();
    writers
        .register_json(1, RecordKind::Prediction.schema_text())
        .expect("current schema parses");
    PredictionDecoders::for_writers(&writers).expect("decoders build")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = decode_prediction(data) {
        // Compared as canonical bytes: a decoded double may be NaN, which is not equal to itself.
        let again = to_avro(&p).expect("a decoded prediction re-encodes");
        let decoded = decode_prediction(&again).expect("re-decodes");
        assert_eq!(to_avro(&decoded).expect("re-encodes"), again);
    }
    if let Ok((decoder, datum)) = DECODERS.select(data) {
        let _ = decoder.decode(datum, &mut IgnoreEntries);
    }
    let _ = from_json_slice::<Prediction>(data);
});
