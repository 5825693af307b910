//! Arbitrary bytes as a KServe inference-logger CloudEvent: the first byte picks structured mode
//! or binary mode (request or response type), the rest is the record value. Decoding may fail
//! with a typed error, never panic; a half that decodes is also run through the mapping.
#![no_main]

use driftwatch_oip::{Message, SourceConfig};
use libfuzzer_sys::fuzz_target;

fn config() -> SourceConfig {
    driftwatch_fuzz::oip_config(
        "[kserve]\ntopics = [\"kserve\"]\n",
        "{ tensor = \"instances\", columns = [\"a\", \"b\"] }",
        "{ tensor = \"predictions\", as = \"argmax\", labels = [\"x\", \"y\"] }",
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    let structured: &[(&str, &[u8])] = &[("content-type", b"application/cloudevents+json")];
    let request: &[(&str, &[u8])] = &[
        ("ce_id", b"r"),
        ("ce_type", b"org.kubeflow.serving.inference.request"),
        ("content-type", b"application/json"),
    ];
    let response: &[(&str, &[u8])] = &[
        ("ce_id", b"r"),
        ("ce_type", b"org.kubeflow.serving.inference.response"),
    ];
    let headers = match first % 3 {
        0 => structured,
        1 => request,
        _ => response,
    };
    let c = config();
    if let Ok(half) = c.decode(&Message { topic: "kserve", headers, payload }) {
        let _ = c.mapping.predictions(&half, &half, 0);
    }
});
