//! The protobuf messages of the Open Inference Protocol that Seldon Core 2 writes to Kafka.
//!
//! Declared with `prost` derive, field by field from the published
//! `specification/protocol/open_inference_grpc.proto` of
//! <https://github.com/kserve/open-inference-protocol> (package `inference`): same message
//! names, field names, numbers and types. Only what the decoders read is declared; the
//! `parameters` maps (field 4 of the request, the response and each tensor) and the requested
//! `outputs` (field 6 of the request) are left out, and protobuf decoding skips fields a
//! message does not declare, so payloads that carry them still decode.
//!
//! Why derive rather than generating from the `.proto` in a build script: the decoders need
//! six messages of one file; `prost-build` needs `protoc` or `protox` (a protobuf compiler in
//! Rust, some thirty more crates to build on every clean build) to produce the same structs.
//! What keeps the declaration honest is `tests::field_numbers_match_the_published_proto`,
//! which decodes bytes written by hand from the `.proto`'s field numbers and wire types.

/// `inference.ModelInferRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferRequest {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(message, repeated, tag = "5")]
    pub inputs: Vec<InferTensor>,
    #[prost(bytes = "vec", repeated, tag = "7")]
    pub raw_input_contents: Vec<Vec<u8>>,
}

/// `inference.ModelInferResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ModelInferResponse {
    #[prost(string, tag = "1")]
    pub model_name: String,
    #[prost(string, tag = "2")]
    pub model_version: String,
    #[prost(string, tag = "3")]
    pub id: String,
    #[prost(message, repeated, tag = "5")]
    pub outputs: Vec<InferTensor>,
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub raw_output_contents: Vec<Vec<u8>>,
}

/// `ModelInferRequest.InferInputTensor` and `ModelInferResponse.InferOutputTensor`: the two
/// have the same fields and numbers (name 1, datatype 2, shape 3, parameters 4, contents 5).
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferTensor {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub datatype: String,
    #[prost(int64, repeated, tag = "3")]
    pub shape: Vec<i64>,
    #[prost(message, optional, tag = "5")]
    pub contents: Option<InferTensorContents>,
}

/// `inference.InferTensorContents`: one repeated field per datatype family.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InferTensorContents {
    #[prost(bool, repeated, tag = "1")]
    pub bool_contents: Vec<bool>,
    /// INT8, INT16, INT32.
    #[prost(int32, repeated, tag = "2")]
    pub int_contents: Vec<i32>,
    #[prost(int64, repeated, tag = "3")]
    pub int64_contents: Vec<i64>,
    /// UINT8, UINT16, UINT32.
    #[prost(uint32, repeated, tag = "4")]
    pub uint_contents: Vec<u32>,
    #[prost(uint64, repeated, tag = "5")]
    pub uint64_contents: Vec<u64>,
    #[prost(float, repeated, tag = "6")]
    pub fp32_contents: Vec<f32>,
    #[prost(double, repeated, tag = "7")]
    pub fp64_contents: Vec<f64>,
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub bytes_contents: Vec<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// A protobuf key: field number and wire type (0 varint, 1 fixed64, 2 length-delimited).
    fn key(field: u8, wire: u8) -> u8 {
        field << 3 | wire
    }

    fn len_delimited(field: u8, body: &[u8]) -> Vec<u8> {
        let mut out = vec![key(field, 2), body.len() as u8];
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn field_numbers_match_the_published_proto() {
        // InferTensorContents { fp64_contents (7, packed doubles): [0.5] }
        let contents = len_delimited(7, &0.5f64.to_le_bytes());
        // InferInputTensor { name 1, datatype 2, shape 3 (packed varints), contents 5 }
        let mut tensor = len_delimited(1, b"x");
        tensor.extend(len_delimited(2, b"FP64"));
        tensor.extend(len_delimited(3, &[1]));
        tensor.extend(len_delimited(5, &contents));
        // ModelInferRequest { model_name 1, model_version 2, id 3, parameters 4 (a map entry,
        // not declared here: skipped), inputs 5, raw_input_contents 7 }
        let mut request = len_delimited(1, b"iris");
        request.extend(len_delimited(2, b"3"));
        request.extend(len_delimited(3, b"r-1"));
        request.extend(len_delimited(4, &len_delimited(1, b"k")));
        request.extend(len_delimited(5, &tensor));
        request.extend(len_delimited(7, b"raw"));
        let r = ModelInferRequest::decode(request.as_slice()).unwrap();
        assert_eq!(
            (
                r.model_name.as_str(),
                r.model_version.as_str(),
                r.id.as_str()
            ),
            ("iris", "3", "r-1")
        );
        assert_eq!(r.inputs.len(), 1);
        assert_eq!(r.inputs[0].name, "x");
        assert_eq!(r.inputs[0].datatype, "FP64");
        assert_eq!(r.inputs[0].shape, vec![1]);
        assert_eq!(
            r.inputs[0].contents.as_ref().unwrap().fp64_contents,
            vec![0.5]
        );
        assert_eq!(r.raw_input_contents, vec![b"raw".to_vec()]);

        // ModelInferResponse { outputs 5, raw_output_contents 6 }; INT64 contents are field 3,
        // FP32 field 6, BYTES field 8.
        let contents = [
            len_delimited(3, &[2]),
            len_delimited(6, &1.0f32.to_le_bytes()),
            len_delimited(8, b"a"),
        ]
        .concat();
        let mut response = len_delimited(3, b"r-1");
        response.extend(len_delimited(5, &len_delimited(5, &contents)));
        response.extend(len_delimited(6, b"raw"));
        let r = ModelInferResponse::decode(response.as_slice()).unwrap();
        let c = r.outputs[0].contents.as_ref().unwrap();
        assert_eq!(
            (c.int64_contents.clone(), c.fp32_contents.clone()),
            (vec![2], vec![1.0])
        );
        assert_eq!(c.bytes_contents, vec![b"a".to_vec()]);
        assert_eq!(r.raw_output_contents, vec![b"raw".to_vec()]);
        // bool 1, int 2, uint 4, uint64 5: varints.
        let contents = [
            len_delimited(1, &[1]),
            len_delimited(2, &[3]),
            len_delimited(4, &[4]),
            len_delimited(5, &[5]),
        ]
        .concat();
        let c = InferTensorContents::decode(contents.as_slice()).unwrap();
        assert_eq!(c.bool_contents, vec![true]);
        assert_eq!(
            (c.int_contents[0], c.uint_contents[0], c.uint64_contents[0]),
            (3, 4, 5)
        );
    }
}
