//! What every decoder hands out: one half of an inference.
//!
//! A model server writes an inference as two messages, the request (the model's inputs) and
//! the response (its outputs), with the same request id. Each decodes to an [`InferenceHalf`];
//! the pairing stage joins the two by id, and [`crate::mapping`] turns the pair into
//! predictions.

use crate::tensor::Tensor;

/// One Kafka record as the decoders see it: no client types, so this crate stays sans-I/O.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub topic: &'a str,
    /// Header names and values, in record order.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub payload: &'a [u8],
}

impl<'a> Message<'a> {
    /// The first header of this name (ASCII case-insensitive), as UTF-8 text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Which half of an inference a message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HalfKind {
    /// The inputs sent to the model (Seldon `.inputs` topic, KServe `...inference.request`).
    Request,
    /// The outputs the model returned (Seldon `.outputs`, KServe `...inference.response`).
    Response,
}

/// One decoded half of an inference.
#[derive(Debug, Clone, PartialEq)]
pub struct InferenceHalf {
    pub kind: HalfKind,
    /// The request id both halves carry; never empty.
    pub id: String,
    /// Model id and version as the mapping resolved them (topic, header, field or a fixed
    /// value); `None` when the place the mapping names is absent in this half.
    pub model_id: Option<String>,
    pub model_version: Option<String>,
    /// Input tensors of a request, output tensors of a response.
    pub tensors: Vec<Tensor>,
}

impl InferenceHalf {
    /// The tensor of this name.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// What a payload itself says about the model (protobuf / v2 JSON `model_name`,
/// `model_version`), before the mapping decides where the model id comes from.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PayloadModel {
    pub name: Option<String>,
    pub version: Option<String>,
}

/// A half as a decoder read it, before the mapping resolves the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoded {
    pub kind: HalfKind,
    pub id: String,
    pub model: PayloadModel,
    /// Attributes the mapping may read as headers: the record's headers, and for a structured
    /// CloudEvent each string attribute `x` as `ce_x` (the name binary mode gives it).
    pub attributes: Vec<(String, String)>,
    pub tensors: Vec<Tensor>,
}

/// The record's headers that are UTF-8 text.
pub(crate) fn text_headers(msg: &Message<'_>) -> Vec<(String, String)> {
    msg.headers
        .iter()
        .filter_map(|(n, v)| Some(((*n).to_owned(), std::str::from_utf8(v).ok()?.to_owned())))
        .collect()
}

pub(crate) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() {
        None
    } else {
        Some(s)
    }
}
