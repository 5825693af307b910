//! Arbitrary bytes into the GroundTruth decoders (Avro fast path and JSON): they may fail, never
//! panic, and what decodes must re-encode to canonical bytes that decode to the same record.
#![no_main]

use driftwatch_codec::{decode_ground_truth, from_json_slice, to_avro};
use driftwatch_core::GroundTruth;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(g) = decode_ground_truth(data) {
        // Compared as canonical bytes: a decoded double may be NaN, which is not equal to itself.
        let again = to_avro(&g).expect("a decoded label re-encodes");
        let decoded = decode_ground_truth(&again).expect("re-decodes");
        assert_eq!(to_avro(&decoded).expect("re-encodes"), again);
    }
    let _ = from_json_slice::<GroundTruth>(data);
});
