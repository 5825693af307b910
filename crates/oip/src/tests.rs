//! End-to-end tests of the decoders and the mapping: Seldon payloads built with the protobuf
//! messages of the published `.proto` (prost encode), KServe payloads from the JSON examples of
//! the specifications (`inference_rest.md`, KServe's logger docs).

use prost::Message as _;

use crate::proto::{InferTensor, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::*;
use driftwatch_core::FeatureValue;

const IRIS: &str = r#"
name = "iris"
pair_wait = "30s"
[seldon]
namespace = "default"
[mapping]
model_id = { from = "topic" }
model_version = { from = "field" }
features = [{ tensor = "predict", columns = ["sl", "sw", "pl", "pw"] }]
prediction = { tensor = "predict", as = "label", labels = ["setosa", "versicolor", "virginica"] }
"#;

fn config(toml_text: &str) -> SourceConfig {
    let c: SourceConfig = toml::from_str(toml_text).unwrap();
    c.validate().unwrap();
    c
}

fn seldon_request(rows: &[[f32; 4]]) -> Vec<u8> {
    ModelInferRequest {
        model_name: "iris".into(),
        model_version: String::new(),
        id: String::new(),
        inputs: vec![InferTensor {
            name: "predict".into(),
            datatype: "FP32".into(),
            shape: vec![rows.len() as i64, 4],
            contents: Some(InferTensorContents {
                fp32_contents: rows.iter().flatten().copied().collect(),
                ..Default::default()
            }),
        }],
        raw_input_contents: vec![],
    }
    .encode_to_vec()
}

fn seldon_response(classes: &[i64]) -> Vec<u8> {
    ModelInferResponse {
        model_name: "iris_1".into(),
        model_version: "1".into(),
        id: String::new(),
        outputs: vec![InferTensor {
            name: "predict".into(),
            datatype: "INT64".into(),
            shape: vec![classes.len() as i64, 1],
            contents: Some(InferTensorContents {
                int64_contents: classes.to_vec(),
                ..Default::default()
            }),
        }],
        raw_output_contents: vec![],
    }
    .encode_to_vec()
}

fn msg<'a>(topic: &'a str, headers: &'a [(&'a str, &'a [u8])], payload: &'a [u8]) -> Message<'a> {
    Message {
        topic,
        headers,
        payload,
    }
}

#[test]
fn seldon_request_and_response_map_to_one_prediction_per_row() {
    let c = config(IRIS);
    let id: &[(&str, &[u8])] = &[("x-request-id", b"req-1")];
    let req = seldon_request(&[[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]);
    let resp = seldon_response(&[0, 1]);
    let q = c
        .decode(&msg("seldon.default.model.iris.inputs", id, &req))
        .unwrap();
    let r = c
        .decode(&msg("seldon.default.model.iris.outputs", id, &resp))
        .unwrap();
    assert_eq!((q.kind, r.kind), (HalfKind::Request, HalfKind::Response));
    assert_eq!((q.id.as_str(), r.id.as_str()), ("req-1", "req-1"));
    assert_eq!(q.model_id.as_deref(), Some("iris"));
    let p = c.mapping.predictions(&q, &r, 1_700_000_000_000).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[0].request_id, "req-1/0");
    assert_eq!(p[1].request_id, "req-1/1");
    assert_eq!(
        (p[0].model_id.as_str(), p[0].model_version.as_str()),
        ("iris", "1")
    );
    assert_eq!(p[0].predicted_label.as_deref(), Some("setosa"));
    assert_eq!(p[1].predicted_label.as_deref(), Some("versicolor"));
    assert_eq!(
        p[1].features[2],
        ("pl".to_owned(), FeatureValue::Number(f64::from(4.3f32)))
    );
    assert_eq!(p[0].timestamp, 1_700_000_000_000);
}

#[test]
fn seldon_raw_contents_decode_like_typed_contents() {
    let c = config(IRIS);
    let id: &[(&str, &[u8])] = &[("x-request-id", b"r")];
    let values = [5.1f32, 3.5, 1.4, 0.2];
    let raw: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    let req = ModelInferRequest {
        inputs: vec![InferTensor {
            name: "predict".into(),
            datatype: "FP32".into(),
            shape: vec![1, 4],
            contents: None,
        }],
        raw_input_contents: vec![raw],
        ..Default::default()
    }
    .encode_to_vec();
    let raw_half = c
        .decode(&msg("seldon.default.model.iris.inputs", id, &req))
        .unwrap();
    let typed = c
        .decode(&msg(
            "seldon.default.model.iris.inputs",
            id,
            &seldon_request(&[values]),
        ))
        .unwrap();
    assert_eq!(raw_half.tensors, typed.tensors);
}

#[test]
fn seldon_bad_input_is_a_typed_error() {
    let c = config(IRIS);
    let id: &[(&str, &[u8])] = &[("x-request-id", b"r")];
    let kind = |topic: &str, headers: &[(&str, &[u8])], payload: &[u8]| {
        c.decode(&msg(topic, headers, payload))
            .map(|_| ())
            .map_err(|e| e.kind())
    };
    let req = seldon_request(&[[1.0; 4]]);
    assert_eq!(
        kind("seldon.default.model.iris.inputs", &[], &req),
        Err("missing_request_id")
    );
    assert_eq!(
        kind(
            "seldon.default.model.iris.inputs",
            &[("x-request-id", b"")],
            &req
        ),
        Err("missing_request_id")
    );
    assert_eq!(
        kind("seldon.default.model.iris.inputs", id, &[0xff, 0xff, 0xff]),
        Err("protobuf")
    );
    assert_eq!(
        kind("seldon.default.model.iris", id, &req),
        Err("unknown_content_type")
    );
    // Wrong shape: 2 x 4 declared, 4 values.
    let mut bad = ModelInferRequest::decode(req.as_slice()).unwrap();
    bad.inputs[0].shape = vec![2, 4];
    assert_eq!(
        kind("seldon.default.model.iris.inputs", id, &bad.encode_to_vec()),
        Err("tensor_shape")
    );
    // Wrong datatype: FP64 declared, fp32_contents sent.
    let mut bad = ModelInferRequest::decode(req.as_slice()).unwrap();
    bad.inputs[0].datatype = "FP64".into();
    assert_eq!(
        kind("seldon.default.model.iris.inputs", id, &bad.encode_to_vec()),
        Err("tensor_datatype")
    );
    // A class beyond the labels, and rows that differ between request and response.
    let q = c
        .decode(&msg("seldon.default.model.iris.inputs", id, &req))
        .unwrap();
    let r = c
        .decode(&msg(
            "seldon.default.model.iris.outputs",
            id,
            &seldon_response(&[7]),
        ))
        .unwrap();
    assert_eq!(
        c.mapping.predictions(&q, &r, 0).map_err(|e| e.kind()),
        Err("invalid_value")
    );
    let r = c
        .decode(&msg(
            "seldon.default.model.iris.outputs",
            id,
            &seldon_response(&[0, 1]),
        ))
        .unwrap();
    assert_eq!(
        c.mapping.predictions(&q, &r, 0).map_err(|e| e.kind()),
        Err("row_count_mismatch")
    );
}

const KSERVE_V1: &str = r#"
name = "sklearn-iris"
[kserve]
topics = ["kserve-logger"]
[mapping]
model_id = { from = "header", name = "ce_inferenceservicename" }
model_version = { from = "fixed", value = "1" }
features = [{ tensor = "instances", columns = ["sl", "sw", "pl", "pw"] }]
prediction = { tensor = "predictions", as = "label" }
"#;

fn binary_headers<'a>(ty: &'a str, id: &'a str) -> Vec<(&'a str, &'a [u8])> {
    vec![
        ("ce_specversion", b"1.0".as_slice()),
        ("ce_id", id.as_bytes()),
        ("ce_type", ty.as_bytes()),
        ("ce_source", b"http://localhost:9081/".as_slice()),
        ("ce_inferenceservicename", b"sklearn-iris".as_slice()),
        ("ce_namespace", b"default".as_slice()),
        ("ce_component", b"predictor".as_slice()),
        ("content-type", b"application/json".as_slice()),
    ]
}

#[test]
fn kserve_binary_v1_events_from_the_logger_docs_pair_into_predictions() {
    let c = config(KSERVE_V1);
    // The logger docs' example: two iris rows in, two classes out.
    let req_h = binary_headers(kserve::REQUEST_TYPE, "0f99bba8");
    let resp_h = binary_headers(kserve::RESPONSE_TYPE, "0f99bba8");
    let request = br#"{"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}"#;
    let response = br#"{"predictions": [1, 1]}"#;
    let q = c.decode(&msg("kserve-logger", &req_h, request)).unwrap();
    let r = c.decode(&msg("kserve-logger", &resp_h, response)).unwrap();
    assert_eq!(q.model_id.as_deref(), Some("sklearn-iris"));
    let p = c.mapping.predictions(&q, &r, 5).unwrap();
    assert_eq!(p.len(), 2);
    assert_eq!(p[1].request_id, "0f99bba8/1");
    assert_eq!(p[1].predicted_label.as_deref(), Some("1"));
    assert_eq!(
        p[1].features[0],
        ("sl".to_owned(), FeatureValue::Number(6.0))
    );
}

const KSERVE_V2: &str = r#"
name = "v2"
[kserve]
topics = ["kserve-logger"]
[mapping]
model_id = { from = "field" }
model_version = { from = "field" }
features = [{ tensor = "input0", columns = ["a", "b", "c"] }, { tensor = "input1", name = "colour" }]
prediction = { tensor = "output0", as = "argmax", labels = ["x", "y"] }
scores = { tensor = "output0", classes = ["x", "y"] }
"#;

#[test]
fn kserve_structured_v2_events_pair_into_predictions() {
    let c = config(KSERVE_V2);
    // The shape of `inference_rest.md`'s request example: named tensors, nested data.
    let request = r#"{"specversion": "1.0", "id": "42", "source": "http://localhost:9081/",
        "type": "org.kubeflow.serving.inference.request", "datacontenttype": "application/json",
        "inferenceservicename": "my-model",
        "data": {"id": "42", "inputs": [
            {"name": "input0", "shape": [1, 3], "datatype": "FP32", "data": [[1.0, 2.0, 3.0]]},
            {"name": "input1", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}}"#;
    let response = r#"{"specversion": "1.0", "id": "42", "source": "http://localhost:9081/",
        "type": "org.kubeflow.serving.inference.response",
        "data": {"model_name": "my-model", "model_version": "7", "id": "42", "outputs": [
            {"name": "output0", "shape": [1, 2], "datatype": "FP32", "data": [0.25, 0.75]}]}}"#;
    let h: &[(&str, &[u8])] = &[(
        "content-type",
        b"application/cloudevents+json; charset=utf-8",
    )];
    let q = c
        .decode(&msg("kserve-logger", h, request.as_bytes()))
        .unwrap();
    let r = c
        .decode(&msg("kserve-logger", h, response.as_bytes()))
        .unwrap();
    let p = c.mapping.predictions(&q, &r, 9).unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].request_id, "42");
    assert_eq!(
        (p[0].model_id.as_str(), p[0].model_version.as_str()),
        ("my-model", "7")
    );
    assert_eq!(p[0].predicted_label.as_deref(), Some("y"));
    assert_eq!(
        p[0].scores,
        Some(vec![("x".to_owned(), 0.25), ("y".to_owned(), 0.75)])
    );
    assert_eq!(
        p[0].features[3],
        ("colour".to_owned(), FeatureValue::Category("red".into()))
    );
}

#[test]
fn kserve_bad_input_is_a_typed_error() {
    let c = config(KSERVE_V1);
    let kind = |headers: &[(&str, &[u8])], payload: &[u8]| {
        c.decode(&msg("kserve-logger", headers, payload))
            .map(|_| ())
            .map_err(|e| e.kind())
    };
    let ok = br#"{"instances": [[1, 2, 3, 4]]}"#;
    let mut h = binary_headers(kserve::REQUEST_TYPE, "1");
    h[7] = ("content-type", b"application/avro".as_slice());
    assert_eq!(kind(&h, ok), Err("unknown_content_type"));
    assert_eq!(kind(&[], ok), Err("unknown_content_type"));
    let h = binary_headers("org.kubeflow.serving.inference.outlier", "1");
    assert_eq!(kind(&h, ok), Err("unknown_event_type"));
    let h = binary_headers(kserve::REQUEST_TYPE, "");
    assert_eq!(kind(&h, ok), Err("missing_request_id"));
    let h = binary_headers(kserve::REQUEST_TYPE, "1");
    assert_eq!(kind(&h, b"{not json"), Err("json"));
    assert_eq!(kind(&h, br#"{"predictions": [1]}"#), Err("json"));
    assert_eq!(
        kind(&h, br#"{"instances": [[1, 2], [1]]}"#),
        Err("tensor_shape")
    );
    let v2 =
        br#"{"inputs": [{"name": "a", "shape": [2], "datatype": "INT32", "data": [1, 2, 3]}]}"#;
    assert_eq!(kind(&h, v2), Err("tensor_shape"));
    let v2 = br#"{"inputs": [{"name": "a", "shape": [1], "datatype": "INT32", "data": ["x"]}]}"#;
    assert_eq!(kind(&h, v2), Err("tensor_datatype"));
    let structured: &[(&str, &[u8])] = &[("content-type", b"application/cloudevents+json")];
    let b64 = br#"{"specversion": "1.0", "id": "1", "type": "org.kubeflow.serving.inference.request", "data_base64": "e30="}"#;
    assert_eq!(kind(structured, b64), Err("unknown_content_type"));
    // A missing tensor and a missing model surface when the pair is mapped.
    let q = c
        .decode(&msg(
            "kserve-logger",
            &binary_headers(kserve::REQUEST_TYPE, "1"),
            br#"{"instances": [{"x": 1}]}"#,
        ))
        .unwrap();
    let r = c
        .decode(&msg(
            "kserve-logger",
            &binary_headers(kserve::RESPONSE_TYPE, "1"),
            br#"{"predictions": [1]}"#,
        ))
        .unwrap();
    assert_eq!(
        c.mapping.predictions(&q, &r, 0).map_err(|e| e.kind()),
        Err("missing_tensor")
    );
}

#[test]
fn v1_object_rows_become_one_tensor_per_member() {
    let c = config(&KSERVE_V1.replace(
        r#"features = [{ tensor = "instances", columns = ["sl", "sw", "pl", "pw"] }]"#,
        r#"features = [{ tensor = "age" }, { tensor = "city" }]"#,
    ));
    let h = binary_headers(kserve::REQUEST_TYPE, "1");
    let q = c
        .decode(&msg(
            "kserve-logger",
            &h,
            br#"{"instances": [{"age": 31, "city": "Oslo"}, {"age": 40, "city": "Rome"}]}"#,
        ))
        .unwrap();
    let r = c
        .decode(&msg(
            "kserve-logger",
            &binary_headers(kserve::RESPONSE_TYPE, "1"),
            br#"{"predictions": ["a", "b"]}"#,
        ))
        .unwrap();
    let p = c.mapping.predictions(&q, &r, 0).unwrap();
    assert_eq!(
        p[1].features,
        vec![
            ("age".to_owned(), FeatureValue::Number(40.0)),
            ("city".to_owned(), FeatureValue::Category("Rome".into()))
        ]
    );
    assert_eq!(p[1].predicted_label.as_deref(), Some("b"));
}

#[test]
fn config_rejects_unknown_fields_and_bad_mappings() {
    assert!(toml::from_str::<SourceConfig>(&IRIS.replace("pair_wait", "pair_wiat")).is_err());
    assert!(toml::from_str::<SourceConfig>(
        &IRIS.replace(r#"{ from = "topic" }"#, r#"{ from = "topic", x = 1 }"#)
    )
    .is_err());
    let both: SourceConfig =
        toml::from_str(&format!("{IRIS}\n[kserve]\ntopics = [\"t\"]\n")).unwrap();
    assert!(both.validate().unwrap_err().contains("exactly one"));
    let dup: SourceConfig =
        toml::from_str(&IRIS.replace(r#""sw", "pl""#, r#""sl", "pl""#)).unwrap();
    assert!(dup.validate().unwrap_err().contains("`sl` named twice"));
    let version: SourceConfig = toml::from_str(&IRIS.replace(
        r#"model_version = { from = "field" }"#,
        r#"model_version = { from = "topic" }"#,
    ))
    .unwrap();
    assert!(version.validate().unwrap_err().contains("model_version"));
    assert_eq!(
        config(IRIS).subscription(),
        vec!["^seldon\\.default\\.model\\.[^.]+\\.(inputs|outputs)$".to_owned()]
    );
}

/// The inference request and response examples of `inference_rest.md` ("Inference Request
/// Examples"), as data of binary-mode logger events. The spec's text lacks the comma after
/// `"id" : "42"` in the response; it is added here so the JSON parses.
#[test]
fn the_rest_specs_examples_decode_as_written() {
    let c = config(KSERVE_V2);
    let input0 =
        r#"{"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]}"#;
    // The spec's second input declares shape [3] and sends one element: refused as a shape
    // error, the whole half with it.
    let input1 = r#"{"name": "input1", "shape": [3], "datatype": "BOOL", "data": [true]}"#;
    let response = r#"{"id": "42", "outputs": [{"name": "output0", "shape": [3, 2], "datatype": "FP32",
        "data": [1.0, 1.1, 2.0, 2.1, 3.0, 3.1]}]}"#;
    let req_h = binary_headers(kserve::REQUEST_TYPE, "42");
    let resp_h = binary_headers(kserve::RESPONSE_TYPE, "42");
    let whole = format!(
        r#"{{"id": "42", "inputs": [{input0}, {input1}], "outputs": [{{"name": "output0"}}]}}"#
    );
    let e = c.decode(&msg("kserve-logger", &req_h, whole.as_bytes()));
    assert_eq!(e.map(|_| ()).map_err(|e| e.kind()), Err("tensor_shape"));
    let first =
        format!(r#"{{"id": "42", "inputs": [{input0}], "outputs": [{{"name": "output0"}}]}}"#);
    let q = c
        .decode(&msg("kserve-logger", &req_h, first.as_bytes()))
        .unwrap();
    assert_eq!(q.tensors[0].shape, vec![2, 2]);
    assert_eq!(
        q.tensors[0].elements,
        Elements::Numbers(vec![1.0, 2.0, 3.0, 4.0])
    );
    let r = c
        .decode(&msg("kserve-logger", &resp_h, response.as_bytes()))
        .unwrap();
    assert_eq!(r.tensors[0].shape, vec![3, 2]);
    assert_eq!(r.tensors[0].elements.len(), 6);
    // Two request rows, three response rows: not one inference's pair of tables.
    let c = config(
        &KSERVE_V2
            .replace(r#", { tensor = "input1", name = "colour" }"#, "")
            .replace(r#"columns = ["a", "b", "c"]"#, r#"columns = ["a", "b"]"#)
            .replace(
                r#"model_id = { from = "field" }"#,
                r#"model_id = { from = "fixed", value = "mymodel" }"#,
            )
            .replace(
                r#"model_version = { from = "field" }"#,
                r#"model_version = { from = "fixed", value = "1" }"#,
            ),
    );
    let q = c
        .decode(&msg("kserve-logger", &req_h, first.as_bytes()))
        .unwrap();
    assert_eq!(
        c.mapping.predictions(&q, &r, 0).map_err(|e| e.kind()),
        Err("row_count_mismatch")
    );
}
