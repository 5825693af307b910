//! Seldon Core 2's model topics: `<prefix>.<namespace>.model.<model>.inputs` holds
//! protobuf `ModelInferRequest`s, `...outputs` `ModelInferResponse`s, each record with the
//! request id in its `x-request-id` header (Seldon Core 2 docs, "Inference", asynchronous
//! requests via Kafka; "Kafka Configuration", `topicPrefix`).
//!
//! A tensor's elements come from its `contents` field of the matching datatype, or from the
//! message's `raw_*_contents` entry at the tensor's index; a payload using both, or a
//! `contents` field other than the datatype's, is a datatype error (`open_inference_grpc.proto`:
//! "this field must not be specified if raw tensor contents are being used").

use prost::Message as _;

use crate::error::{Result, SourceError};
use crate::half::{non_empty, text_headers, Decoded, HalfKind, Message, PayloadModel};
use crate::proto::{InferTensor, InferTensorContents, ModelInferRequest, ModelInferResponse};
use crate::tensor::{Datatype, Elements, Tensor};

/// The header Seldon Core 2 puts the request id in.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Whether a topic is a Seldon model topic, and which half it holds.
pub fn topic_half(topic: &str) -> Option<HalfKind> {
    if topic.ends_with(".inputs") {
        Some(HalfKind::Request)
    } else if topic.ends_with(".outputs") {
        Some(HalfKind::Response)
    } else {
        None
    }
}

/// The model name in a Seldon model topic: the segment after `model`.
pub fn topic_model(topic: &str) -> Option<&str> {
    let mut parts = topic.rsplit('.');
    let _half = parts.next()?;
    let model = parts.next()?;
    (parts.next()? == "model" && !model.is_empty()).then_some(model)
}

/// A regular expression (librdkafka `^` subscription) for every model topic of a namespace.
pub fn topic_pattern(prefix: &str, namespace: &str) -> String {
    format!(
        "^{}\\.{}\\.model\\.[^.]+\\.(inputs|outputs)$",
        regex_escape(prefix),
        regex_escape(namespace)
    )
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = !(c.is_ascii_alphanumeric() || c == '_' || c == '-');
            special.then_some('\\').into_iter().chain(Some(c))
        })
        .collect()
}

/// Decodes one record of a Seldon model topic.
pub(crate) fn decode(msg: &Message<'_>, id_header: &str) -> Result<Decoded> {
    let kind = topic_half(msg.topic).ok_or_else(|| {
        SourceError::UnknownContentType(format!(
            "topic `{}` is neither `.inputs` nor `.outputs`",
            msg.topic
        ))
    })?;
    let id = msg
        .header(id_header)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| SourceError::MissingRequestId(format!("no `{id_header}` header")))?
        .to_owned();
    let (model, tensors, raw) = match kind {
        HalfKind::Request => {
            let r = ModelInferRequest::decode(msg.payload)?;
            let m = PayloadModel {
                name: non_empty(r.model_name),
                version: non_empty(r.model_version),
            };
            (m, r.inputs, r.raw_input_contents)
        }
        HalfKind::Response => {
            let r = ModelInferResponse::decode(msg.payload)?;
            let m = PayloadModel {
                name: non_empty(r.model_name),
                version: non_empty(r.model_version),
            };
            (m, r.outputs, r.raw_output_contents)
        }
    };
    if !raw.is_empty() && raw.len() != tensors.len() {
        return Err(SourceError::Protobuf(format!(
            "{} raw content entries for {} tensors",
            raw.len(),
            tensors.len()
        )));
    }
    let tensors = tensors
        .into_iter()
        .enumerate()
        .map(|(i, t)| tensor(t, raw.get(i).map(Vec::as_slice)))
        .collect::<Result<Vec<_>>>()?;
    Ok(Decoded {
        kind,
        id,
        model,
        attributes: text_headers(msg),
        tensors,
    })
}

fn tensor(t: InferTensor, raw: Option<&[u8]>) -> Result<Tensor> {
    let datatype = Datatype::parse(&t.name, &t.datatype)?;
    match (raw, t.contents) {
        (Some(_), Some(c)) if c != InferTensorContents::default() => Err(SourceError::datatype(
            &t.name,
            "both `contents` and raw contents are set",
        )),
        (Some(raw), _) => Tensor::from_raw(t.name, datatype, &t.shape, raw),
        (None, c) => {
            let elements = contents(&t.name, datatype, c.unwrap_or_default())?;
            Tensor::new(t.name, datatype, &t.shape, elements)
        }
    }
}

/// Takes the `contents` field of the datatype; any other non-empty field is an error.
fn contents(name: &str, datatype: Datatype, c: InferTensorContents) -> Result<Elements> {
    let InferTensorContents {
        bool_contents,
        int_contents,
        int64_contents,
        uint_contents,
        uint64_contents,
        fp32_contents,
        fp64_contents,
        bytes_contents,
    } = c;
    let filled = [
        ("bool_contents", !bool_contents.is_empty()),
        ("int_contents", !int_contents.is_empty()),
        ("int64_contents", !int64_contents.is_empty()),
        ("uint_contents", !uint_contents.is_empty()),
        ("uint64_contents", !uint64_contents.is_empty()),
        ("fp32_contents", !fp32_contents.is_empty()),
        ("fp64_contents", !fp64_contents.is_empty()),
        ("bytes_contents", !bytes_contents.is_empty()),
    ];
    let expected = match datatype {
        Datatype::Bool => "bool_contents",
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => "int_contents",
        Datatype::Int64 => "int64_contents",
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => "uint_contents",
        Datatype::Uint64 => "uint64_contents",
        Datatype::Fp32 => "fp32_contents",
        Datatype::Fp64 => "fp64_contents",
        Datatype::Bytes => "bytes_contents",
        Datatype::Fp16 | Datatype::Bf16 => {
            return Err(SourceError::datatype(
                name,
                "FP16 and BF16 need raw contents",
            ))
        }
    };
    if let Some((other, _)) = filled.iter().find(|(f, set)| *set && *f != expected) {
        return Err(SourceError::datatype(
            name,
            format!("{datatype:?} tensor with `{other}`"),
        ));
    }
    Ok(match datatype {
        Datatype::Bool => Elements::Numbers(
            bool_contents
                .into_iter()
                .map(|b| f64::from(u8::from(b)))
                .collect(),
        ),
        Datatype::Int8 | Datatype::Int16 | Datatype::Int32 => {
            Elements::Numbers(int_contents.into_iter().map(f64::from).collect())
        }
        Datatype::Int64 => {
            Elements::Numbers(int64_contents.into_iter().map(|x| x as f64).collect())
        }
        Datatype::Uint8 | Datatype::Uint16 | Datatype::Uint32 => {
            Elements::Numbers(uint_contents.into_iter().map(f64::from).collect())
        }
        Datatype::Uint64 => {
            Elements::Numbers(uint64_contents.into_iter().map(|x| x as f64).collect())
        }
        Datatype::Fp32 => Elements::Numbers(fp32_contents.into_iter().map(f64::from).collect()),
        Datatype::Fp64 => Elements::Numbers(fp64_contents),
        Datatype::Bytes | Datatype::Fp16 | Datatype::Bf16 => Elements::Texts(
            bytes_contents
                .into_iter()
                .map(|b| {
                    String::from_utf8(b)
                        .map_err(|_| SourceError::datatype(name, "BYTES element is not UTF-8"))
                })
                .collect::<Result<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_name_their_half_and_model() {
        assert_eq!(
            topic_half("seldon.default.model.iris.inputs"),
            Some(HalfKind::Request)
        );
        assert_eq!(
            topic_half("seldon.default.model.iris.outputs"),
            Some(HalfKind::Response)
        );
        assert_eq!(topic_half("seldon.default.model.iris"), None);
        assert_eq!(
            topic_model("seldon.default.model.iris.inputs"),
            Some("iris")
        );
        assert_eq!(topic_model("seldon.default.pipeline.iris.inputs"), None);
        assert_eq!(
            topic_pattern("seldon", "my.ns"),
            "^seldon\\.my\\.ns\\.model\\.[^.]+\\.(inputs|outputs)$"
        );
    }
}
