//! Arbitrary bytes as the value of a Seldon Core 2 model-topic record: the first byte picks the
//! `.inputs` or `.outputs` topic, the rest is the protobuf. Decoding may fail with a typed error,
//! never panic; a half that decodes is also run through the mapping (as both halves).
#![no_main]

use driftwatch_oip::{Message, SourceConfig};
use libfuzzer_sys::fuzz_target;

fn config() -> SourceConfig {
    driftwatch_fuzz::oip_config(
        "[seldon]\nnamespace = \"default\"\n",
        "{ tensor = \"predict\", columns = [\"a\", \"b\"] }",
        "{ tensor = \"predict\", as = \"label\", column = 0 }",
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    let topic = if first & 1 == 0 {
        "seldon.default.model.iris.inputs"
    } else {
        "seldon.default.model.iris.outputs"
    };
    let headers: &[(&str, &[u8])] = &[("x-request-id", b"r")];
    let c = config();
    if let Ok(half) = c.decode(&Message { topic, headers, payload }) {
        let _ = c.mapping.predictions(&half, &half, 0);
    }
});
