//! Arbitrary bytes as the join's partials (what the monitor stage reads): the Avro datum and
//! the feature signature it carries may fail to decode, never panic; what decodes re-encodes to
//! the same canonical bytes.
#![no_main]

use driftwatch_codec::{from_avro, to_avro};
use driftwatch_core::summary::{FeatureInterner, SignatureSummary};
use driftwatch_core::ModelPartial;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = from_avro::<ModelPartial>(data) {
        let again = to_avro(&p).expect("a decoded partial re-encodes");
        let decoded: ModelPartial = from_avro(&again).expect("re-decodes");
        assert_eq!(to_avro(&decoded).expect("re-encodes"), again);
        if let Some(sig) = p.signature.as_deref() {
            let _ = SignatureSummary::from_bytes(sig, &mut FeatureInterner::new());
        }
    }
    // The signature format alone, from the start of the input.
    let _ = SignatureSummary::from_bytes(data, &mut FeatureInterner::new());
});
