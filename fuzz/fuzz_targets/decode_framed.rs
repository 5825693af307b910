//! Arbitrary bytes as Confluent-framed payloads (magic byte, 4-byte schema id, datum) of both
//! inputs, through the decoders selected by schema id: they may fail, never panic, and a datum
//! that decodes as a prediction or label decodes the same with the owned decoder.
#![no_main]

use std::sync::LazyLock;

use driftwatch_codec::borrowed::IgnoreEntries;
use driftwatch_codec::{
    split_framed, GroundTruthDecoders, PredictionDecoders, RecordKind, WriterSchemas,
};
use libfuzzer_sys::fuzz_target;

/// Schema id 1 is the current Prediction schema and 3 the released v1 one (read by schema
/// resolution); 2 the current GroundTruth schema and 4 the released v1 one.
static PREDICTIONS: LazyLock<PredictionDecoders> = LazyLock::new(|| {
    let mut w = WriterSchemas::new();
    w.register_json(1, RecordKind::Prediction.schema_text())
        .expect("prediction schema parses");
    w.register_json(3, include_str!("../../schemas/released/v1/Prediction.avsc"))
        .expect("released prediction schema parses");
    PredictionDecoders::for_writers(&w).expect("decoders build")
});
static LABELS: LazyLock<GroundTruthDecoders> = LazyLock::new(|| {
    let mut w = WriterSchemas::new();
    w.register_json(2, RecordKind::GroundTruth.schema_text())
        .expect("ground truth schema parses");
    w.register_json(
        4,
        include_str!("../../schemas/released/v1/GroundTruth.avsc"),
    )
    .expect("released ground truth schema parses");
    GroundTruthDecoders::for_writers(&w).expect("decoders build")
});

fuzz_target!(|data: &[u8]| {
    let _ = split_framed(data);
    if let Ok((decoder, datum)) = PREDICTIONS.select(data) {
        let borrowed = decoder.decode(datum, &mut IgnoreEntries).is_ok();
        let owned = decoder.decode_owned(datum).is_ok();
        assert_eq!(
            borrowed, owned,
            "borrowed and owned prediction decoders disagree"
        );
    }
    if let Ok((decoder, datum)) = LABELS.select(data) {
        let borrowed = decoder.decode(datum).is_ok();
        let owned = decoder.decode_owned(datum).is_ok();
        assert_eq!(
            borrowed, owned,
            "borrowed and owned label decoders disagree"
        );
    }
});
