//! Tensors of the Open Inference Protocol, as both wire forms (protobuf, JSON) decode to.
//!
//! A tensor is a name, a datatype, a shape and its elements flattened in row-major order
//! (`inference_rest.md`, "Tensor Data"; `open_inference_grpc.proto`, `InferTensorContents`).
//! Elements are kept as [`Elements::Numbers`] (every numeric datatype and BOOL, as `f64`: an
//! INT64 or UINT64 above 2^53 loses precision, which a feature or a score can afford) or
//! [`Elements::Texts`] (BYTES, which must be UTF-8 here). Every constructor checks that the
//! element count equals the product of the shape, so later code indexes rows and columns
//! without further checks.

use crate::error::{Result, SourceError};

/// The datatypes of the protocol (`inference_rest.md`, "Tensor Data Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Bf16,
    Fp32,
    Fp64,
    Bytes,
}

impl Datatype {
    /// Parses the protocol's spelling (`"FP32"`, `"BYTES"`, ...).
    pub fn parse(tensor: &str, s: &str) -> Result<Self> {
        Ok(match s {
            "BOOL" => Datatype::Bool,
            "UINT8" => Datatype::Uint8,
            "UINT16" => Datatype::Uint16,
            "UINT32" => Datatype::Uint32,
            "UINT64" => Datatype::Uint64,
            "INT8" => Datatype::Int8,
            "INT16" => Datatype::Int16,
            "INT32" => Datatype::Int32,
            "INT64" => Datatype::Int64,
            "FP16" => Datatype::Fp16,
            "BF16" => Datatype::Bf16,
            "FP32" => Datatype::Fp32,
            "FP64" => Datatype::Fp64,
            "BYTES" => Datatype::Bytes,
            other => return Err(SourceError::datatype(tensor, format!("unknown `{other}`"))),
        })
    }

    /// Bytes of one element in `raw_*_contents`; `None` for BYTES (length-prefixed).
    pub fn raw_width(self) -> Option<usize> {
        Some(match self {
            Datatype::Bool | Datatype::Uint8 | Datatype::Int8 => 1,
            Datatype::Uint16 | Datatype::Int16 | Datatype::Fp16 | Datatype::Bf16 => 2,
            Datatype::Uint32 | Datatype::Int32 | Datatype::Fp32 => 4,
            Datatype::Uint64 | Datatype::Int64 | Datatype::Fp64 => 8,
            Datatype::Bytes => return None,
        })
    }
}

/// A tensor's elements, flattened in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub enum Elements {
    /// Every numeric datatype; BOOL as 0.0 / 1.0.
    Numbers(Vec<f64>),
    /// BYTES elements, UTF-8.
    Texts(Vec<String>),
}

impl Elements {
    pub fn len(&self) -> usize {
        match self {
            Elements::Numbers(v) => v.len(),
            Elements::Texts(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One named tensor whose element count matches its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub datatype: Datatype,
    pub shape: Vec<usize>,
    pub elements: Elements,
}

impl Tensor {
    /// Builds a tensor, checking the shape (no negative dimension) against the element count.
    pub fn new(
        name: String,
        datatype: Datatype,
        shape: &[i64],
        elements: Elements,
    ) -> Result<Self> {
        let mut dims = Vec::with_capacity(shape.len());
        let mut count: usize = 1;
        for &d in shape {
            let d = usize::try_from(d)
                .map_err(|_| SourceError::shape(&name, format!("negative dimension {d}")))?;
            count = count
                .checked_mul(d)
                .ok_or_else(|| SourceError::shape(&name, "element count overflows"))?;
            dims.push(d);
        }
        if count != elements.len() {
            return Err(SourceError::shape(
                &name,
                format!(
                    "{shape:?} holds {count} element(s), the data {}",
                    elements.len()
                ),
            ));
        }
        let numeric = matches!(elements, Elements::Numbers(_));
        if numeric == (datatype == Datatype::Bytes) {
            return Err(SourceError::datatype(
                &name,
                format!(
                    "{datatype:?} tensor with {} data",
                    if numeric { "numeric" } else { "text" }
                ),
            ));
        }
        Ok(Tensor {
            name,
            datatype,
            shape: dims,
            elements,
        })
    }

    /// Rows and columns when the tensor is read as a table: `[n]` is n rows of one column,
    /// `[n, m]` n rows of m columns; more dimensions are refused.
    pub fn rows_cols(&self) -> Result<(usize, usize)> {
        match self.shape[..] {
            [n] => Ok((n, 1)),
            [n, m] => Ok((n, m)),
            _ => Err(SourceError::shape(
                &self.name,
                format!("{:?}: the mapping reads 1-D or 2-D tensors", self.shape),
            )),
        }
    }

    /// Decodes `raw_input_contents` / `raw_output_contents` bytes of this datatype
    /// (little-endian, row-major; BYTES elements each prefixed by a 4-byte little-endian length).
    pub fn from_raw(name: String, datatype: Datatype, shape: &[i64], raw: &[u8]) -> Result<Self> {
        let elements = match datatype.raw_width() {
            None => Elements::Texts(raw_texts(&name, raw)?),
            Some(w) => {
                if raw.len() % w != 0 {
                    return Err(SourceError::shape(
                        &name,
                        format!(
                            "{} raw byte(s) is not a whole number of {w}-byte elements",
                            raw.len()
                        ),
                    ));
                }
                Elements::Numbers(
                    raw.chunks_exact(w)
                        .map(|c| raw_number(datatype, c))
                        .collect(),
                )
            }
        };
        Tensor::new(name, datatype, shape, elements)
    }
}

fn raw_texts(name: &str, mut raw: &[u8]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let Some((len, rest)) = raw.split_first_chunk::<4>() else {
            return Err(SourceError::shape(name, "truncated BYTES length prefix"));
        };
        let len = u32::from_le_bytes(*len) as usize;
        let Some((item, rest)) = rest.split_at_checked(len) else {
            return Err(SourceError::shape(
                name,
                "BYTES element longer than the data",
            ));
        };
        let text = std::str::from_utf8(item)
            .map_err(|_| SourceError::datatype(name, "BYTES element is not UTF-8"))?;
        out.push(text.to_owned());
        raw = rest;
    }
    Ok(out)
}

/// One little-endian element of `c.len() == datatype.raw_width()` bytes.
fn raw_number(datatype: Datatype, c: &[u8]) -> f64 {
    let b = |i: usize| c.get(i).copied().unwrap_or(0);
    let u16le = || u16::from_le_bytes([b(0), b(1)]);
    let u32le = || u32::from_le_bytes([b(0), b(1), b(2), b(3)]);
    let u64le = || u64::from_le_bytes([b(0), b(1), b(2), b(3), b(4), b(5), b(6), b(7)]);
    match datatype {
        Datatype::Bool => f64::from(u8::from(b(0) != 0)),
        Datatype::Uint8 => f64::from(b(0)),
        Datatype::Int8 => f64::from(b(0) as i8),
        Datatype::Uint16 => f64::from(u16le()),
        Datatype::Int16 => f64::from(u16le() as i16),
        Datatype::Fp16 => f16_to_f64(u16le()),
        Datatype::Bf16 => f64::from(f32::from_bits(u32::from(u16le()) << 16)),
        Datatype::Uint32 => f64::from(u32le()),
        Datatype::Int32 => f64::from(u32le() as i32),
        Datatype::Fp32 => f64::from(f32::from_bits(u32le())),
        Datatype::Uint64 => u64le() as f64,
        Datatype::Int64 => u64le() as i64 as f64,
        Datatype::Fp64 => f64::from_bits(u64le()),
        Datatype::Bytes => f64::NAN,
    }
}

/// IEEE 754 binary16 to f64 (subnormals, infinities and NaN included).
fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f64::from(h & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_must_match_the_shape() {
        let ok = Tensor::new(
            "t".into(),
            Datatype::Fp32,
            &[2, 2],
            Elements::Numbers(vec![1.0; 4]),
        );
        assert_eq!(ok.map(|t| t.rows_cols().ok()), Ok(Some((2, 2))));
        let e = Tensor::new(
            "t".into(),
            Datatype::Fp32,
            &[2, 3],
            Elements::Numbers(vec![1.0; 4]),
        );
        assert_eq!(e.map(|_| ()).map_err(|e| e.kind()), Err("tensor_shape"));
        let e = Tensor::new("t".into(), Datatype::Fp32, &[-1], Elements::Numbers(vec![]));
        assert_eq!(e.map(|_| ()).map_err(|e| e.kind()), Err("tensor_shape"));
    }

    #[test]
    fn text_data_in_a_numeric_tensor_is_a_datatype_error() {
        let e = Tensor::new(
            "t".into(),
            Datatype::Fp64,
            &[1],
            Elements::Texts(vec!["a".into()]),
        );
        assert_eq!(e.map(|_| ()).map_err(|e| e.kind()), Err("tensor_datatype"));
        let e = Datatype::parse("t", "FLOAT");
        assert_eq!(e.map_err(|e| e.kind()), Err("tensor_datatype"));
    }

    #[test]
    fn raw_contents_decode_little_endian_row_major() {
        let mut raw = Vec::new();
        for x in [1.5f32, -2.0, 0.25, 8.0] {
            raw.extend_from_slice(&x.to_le_bytes());
        }
        let t = Tensor::from_raw("t".into(), Datatype::Fp32, &[2, 2], &raw).unwrap();
        assert_eq!(t.elements, Elements::Numbers(vec![1.5, -2.0, 0.25, 8.0]));
        let t =
            Tensor::from_raw("t".into(), Datatype::Int64, &[1], &(-7i64).to_le_bytes()).unwrap();
        assert_eq!(t.elements, Elements::Numbers(vec![-7.0]));
        // 1.0 and -2.5 in binary16; 1.0 in bfloat16.
        let t =
            Tensor::from_raw("t".into(), Datatype::Fp16, &[2], &[0x00, 0x3c, 0x00, 0xc1]).unwrap();
        assert_eq!(t.elements, Elements::Numbers(vec![1.0, -2.5]));
        let t = Tensor::from_raw("t".into(), Datatype::Bf16, &[1], &[0x80, 0x3f]).unwrap();
        assert_eq!(t.elements, Elements::Numbers(vec![1.0]));
        let e = Tensor::from_raw("t".into(), Datatype::Fp32, &[1], &[0, 0, 0]);
        assert_eq!(e.map(|_| ()).map_err(|e| e.kind()), Err("tensor_shape"));
    }

    #[test]
    fn raw_bytes_elements_are_length_prefixed() {
        let mut raw = Vec::new();
        for s in ["setosa", "virginica"] {
            raw.extend_from_slice(&(s.len() as u32).to_le_bytes());
            raw.extend_from_slice(s.as_bytes());
        }
        let t = Tensor::from_raw("t".into(), Datatype::Bytes, &[2], &raw).unwrap();
        assert_eq!(
            t.elements,
            Elements::Texts(vec!["setosa".into(), "virginica".into()])
        );
        let e = Tensor::from_raw("t".into(), Datatype::Bytes, &[1], &raw[..7]);
        assert_eq!(e.map(|_| ()).map_err(|e| e.kind()), Err("tensor_shape"));
    }
}
