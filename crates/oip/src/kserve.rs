//! KServe's inference logger, as CloudEvents on a Kafka topic (Knative's Kafka broker or sink).
//!
//! The logger sends each inference as two events with the same `id`, of `type`
//! `org.kubeflow.serving.inference.request` and `org.kubeflow.serving.inference.response`, and
//! extension attributes `inferenceservicename`, `namespace`, `component`, `endpoint` (KServe
//! docs, "Inference Logger"). On Kafka an event is in one of two content modes (CloudEvents
//! "Kafka Protocol Binding", section 3):
//!
//! - binary: the data is the record value, each attribute `x` a header `ce_x`, and the
//!   `content-type` header is the data's media type; this decoder reads `application/json`
//!   (absent counts as JSON);
//! - structured: the record's `content-type` is `application/cloudevents+json` and the value
//!   is the whole event in the JSON event format, the data in its `data` member (`data_base64`
//!   is refused: the logger's data is JSON).
//!
//! The data is a v1 body (`{"instances": [...]}` / `{"predictions": [...]}`, KServe's V1
//! protocol) or a v2 body of the Open Inference Protocol REST form (`{"inputs": [...]}` /
//! `{"outputs": [...]}`, each tensor `{"name", "shape", "datatype", "data"}`, the data flat or
//! nested in row-major order; `inference_rest.md`). A v1 body becomes tensors as follows: rows
//! that are objects give one tensor per member (`[n]` or `[n, m]`); rows that are scalars or
//! arrays give one tensor named `instances` / `predictions` (`[n]` or `[n, m]`).

use serde_json::{Map, Value};

use crate::error::{Result, SourceError};
use crate::half::{text_headers, Decoded, HalfKind, Message, PayloadModel};
use crate::tensor::{Datatype, Elements, Tensor};

/// CloudEvent `type` of a logged request.
pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
/// CloudEvent `type` of a logged response.
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";
/// Media type of a structured-mode event in the JSON event format.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// Decodes one CloudEvent record of KServe's logger.
pub(crate) fn decode(msg: &Message<'_>) -> Result<Decoded> {
    let content_type = msg.header("content-type").map(media_type);
    if content_type.as_deref() == Some(STRUCTURED_CONTENT_TYPE) {
        return structured(msg);
    }
    if msg.header("ce_type").is_none() && msg.header("ce_specversion").is_none() {
        return Err(SourceError::UnknownContentType(match content_type {
            Some(t) => format!("{t} without `ce_` headers"),
            None => "no `content-type` and no `ce_` headers: not a CloudEvent".to_owned(),
        }));
    }
    if let Some(t) = content_type.filter(|t| t != "application/json") {
        return Err(SourceError::UnknownContentType(t));
    }
    let kind = event_kind(msg.header("ce_type").unwrap_or(""))?;
    let id = required_id(msg.header("ce_id"))?;
    let data: Value = serde_json::from_slice(msg.payload)?;
    body(kind, id, data, text_headers(msg))
}

fn structured(msg: &Message<'_>) -> Result<Decoded> {
    let event: Map<String, Value> = serde_json::from_slice(msg.payload)?;
    let text = |k: &str| event.get(k).and_then(Value::as_str);
    if let Some(t) = text("datacontenttype")
        .map(media_type)
        .filter(|t| t != "application/json")
    {
        return Err(SourceError::UnknownContentType(t));
    }
    let kind = event_kind(text("type").unwrap_or(""))?;
    let id = required_id(text("id"))?;
    let mut attributes = text_headers(msg);
    for (k, v) in &event {
        if let Value::String(s) = v {
            attributes.push((format!("ce_{k}"), s.clone()));
        }
    }
    let data = match (event.get("data"), event.contains_key("data_base64")) {
        (Some(d), _) => d.clone(),
        (None, true) => {
            return Err(SourceError::UnknownContentType(
                "structured event with `data_base64`".to_owned(),
            ))
        }
        (None, false) => return Err(SourceError::Json("event without `data`".to_owned())),
    };
    body(kind, id, data, attributes)
}

/// `application/json; charset=utf-8` → `application/json`.
fn media_type(s: &str) -> String {
    s.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn event_kind(ty: &str) -> Result<HalfKind> {
    match ty {
        REQUEST_TYPE => Ok(HalfKind::Request),
        RESPONSE_TYPE => Ok(HalfKind::Response),
        other => Err(SourceError::UnknownEventType(other.to_owned())),
    }
}

fn required_id(id: Option<&str>) -> Result<String> {
    match id {
        Some(id) if !id.is_empty() => Ok(id.to_owned()),
        _ => Err(SourceError::MissingRequestId(
            "no CloudEvent `id`".to_owned(),
        )),
    }
}

fn body(
    kind: HalfKind,
    id: String,
    data: Value,
    attributes: Vec<(String, String)>,
) -> Result<Decoded> {
    let Value::Object(mut data) = data else {
        return Err(SourceError::Json(
            "the event data is not a JSON object".to_owned(),
        ));
    };
    let (v2, v1) = match kind {
        HalfKind::Request => ("inputs", "instances"),
        HalfKind::Response => ("outputs", "predictions"),
    };
    let model = PayloadModel {
        name: data
            .get("model_name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        version: data
            .get("model_version")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let tensors = if let Some(tensors) = data.remove(v2) {
        v2_tensors(tensors)?
    } else if let Some(rows) = data.remove(v1) {
        v1_tensors(v1, rows)?
    } else {
        return Err(SourceError::Json(format!(
            "data has neither `{v2}` (v2) nor `{v1}` (v1)"
        )));
    };
    Ok(Decoded {
        kind,
        id,
        model,
        attributes,
        tensors,
    })
}

/// `[{"name", "shape", "datatype", "data"}, ...]` of the v2 REST form.
fn v2_tensors(tensors: Value) -> Result<Vec<Tensor>> {
    #[derive(serde::Deserialize)]
    struct V2Tensor {
        name: String,
        shape: Vec<i64>,
        datatype: String,
        data: Value,
    }
    let tensors: Vec<V2Tensor> = serde_json::from_value(tensors)?;
    tensors
        .into_iter()
        .map(|t| {
            let datatype = Datatype::parse(&t.name, &t.datatype)?;
            let mut flat = Vec::new();
            flatten(t.data, &mut flat);
            let elements = elements(&t.name, datatype, flat)?;
            Tensor::new(t.name, datatype, &t.shape, elements)
        })
        .collect()
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.into_iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// JSON scalars as elements of `datatype`: numbers (and booleans for BOOL) or strings (BYTES).
fn elements(name: &str, datatype: Datatype, flat: Vec<Value>) -> Result<Elements> {
    let wrong = |v: &Value| SourceError::datatype(name, format!("{datatype:?} tensor holds {v}"));
    if datatype == Datatype::Bytes {
        return flat
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(wrong(&other)),
            })
            .collect::<Result<_>>()
            .map(Elements::Texts);
    }
    flat.into_iter()
        .map(|v| match (&v, datatype) {
            (Value::Number(n), _) => n.as_f64().ok_or_else(|| wrong(&v)),
            (Value::Bool(b), Datatype::Bool) => Ok(f64::from(u8::from(*b))),
            _ => Err(wrong(&v)),
        })
        .collect::<Result<_>>()
        .map(Elements::Numbers)
}

/// Rows of a v1 body into tensors (see the module doc).
fn v1_tensors(name: &str, rows: Value) -> Result<Vec<Tensor>> {
    let Value::Array(rows) = rows else {
        return Err(SourceError::Json(format!("`{name}` is not an array")));
    };
    if !rows.iter().all(Value::is_object) {
        return Ok(vec![column(name, rows)?]);
    }
    let mut names: Vec<String> = Vec::new();
    for row in &rows {
        if let Value::Object(m) = row {
            names.extend(
                m.keys()
                    .filter(|k| !names.contains(k))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
        }
    }
    names
        .into_iter()
        .map(|key| {
            let values = rows
                .iter()
                .map(|r| {
                    r.get(&key)
                        .cloned()
                        .ok_or_else(|| SourceError::shape(&key, "absent from a row"))
                })
                .collect::<Result<Vec<_>>>()?;
            column(&key, values)
        })
        .collect()
}

/// Values of one column, one per row: all scalars (`[n]`) or all arrays of one length
/// (`[n, m]`); numbers and booleans make an FP64 tensor, strings a BYTES one.
fn column(name: &str, values: Vec<Value>) -> Result<Tensor> {
    let n = values.len();
    let width = match values.first() {
        Some(Value::Array(a)) => Some(a.len()),
        _ => None,
    };
    let mut flat = Vec::with_capacity(n * width.unwrap_or(1));
    for v in values {
        match (v, width) {
            (Value::Array(a), Some(m)) if a.len() == m => flat.extend(a),
            (v, None) if !v.is_array() && !v.is_object() => flat.push(v),
            _ => return Err(SourceError::shape(name, "rows of different shapes")),
        }
    }
    let datatype = if flat.iter().all(Value::is_string) && !flat.is_empty() {
        Datatype::Bytes
    } else if flat.iter().all(Value::is_boolean) && !flat.is_empty() {
        Datatype::Bool
    } else {
        Datatype::Fp64
    };
    let elements = elements(name, datatype, flat)?;
    let shape = match width {
        Some(m) => vec![n as i64, m as i64],
        None => vec![n as i64],
    };
    Tensor::new(name.to_owned(), datatype, &shape, elements)
}
