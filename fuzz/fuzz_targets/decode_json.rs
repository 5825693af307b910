//! Arbitrary bytes into the JSON form of every record driftwatch reads: it may fail, never
//! panic, and a record that decodes re-encodes to JSON that decodes to the same Avro bytes.
#![no_main]

use driftwatch_codec::{from_json_slice, to_avro, to_json, JsonRecord};
use driftwatch_core::{GroundTruth, ModelReference, Prediction};
use libfuzzer_sys::fuzz_target;

fn round_trip<T: JsonRecord + driftwatch_codec::AvroRecord>(data: &[u8]) {
    if let Ok(r) = from_json_slice::<T>(data) {
        // Compared as canonical Avro bytes: a value may be NaN, not equal to itself.
        let json = to_json(&r).expect("a decoded record re-encodes");
        let again: T = from_json_slice(json.as_bytes()).expect("its JSON decodes");
        assert_eq!(
            to_avro(&again).expect("encodes"),
            to_avro(&r).expect("encodes"),
            "JSON round trip changed the record"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Prediction>(data);
    round_trip::<GroundTruth>(data);
    let _ = from_json_slice::<ModelReference>(data);
});
