//! From a paired request and response to driftwatch [`Prediction`]s: which tensor (and which
//! column of a 2-D tensor) is which feature, the prediction and the scores, and where the model
//! id and version come from. This is the `[sources.mapping]` section a user writes.
//!
//! Rows: an inference may carry a batch. Every tensor the mapping reads is a table of `n` rows
//! (`[n]` or `[n, m]`, see [`Tensor::rows_cols`]); the request's and the response's `n` must be
//! equal, and row `i` becomes one prediction with request id `<id>` when `n == 1` and
//! `<id>/<i>` otherwise, so a ground-truth label for a batched row is keyed `<id>/<i>`.

use driftwatch_core::{FeatureValue, Prediction, TimestampMs};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SourceError};
use crate::half::InferenceHalf;
use crate::tensor::{Elements, Tensor};

/// Where a model id or version is read from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "from", rename_all = "snake_case", deny_unknown_fields)]
pub enum ValueFrom {
    /// The topic: the `<model>` segment of a Seldon model topic, else the whole topic name.
    /// For `model_id` only. (Empty struct variants, not unit ones: serde's
    /// `deny_unknown_fields` only checks struct variants of a tagged enum.)
    Topic {},
    /// A record header (ASCII case-insensitive), e.g. `ce_inferenceservicename`; a structured
    /// CloudEvent's attribute `x` is read as header `ce_x`.
    Header { name: String },
    /// The payload's `model_name` / `model_version` field (protobuf, v2 JSON).
    Field {},
    /// A fixed value, e.g. a version the payload does not carry.
    Fixed { value: String },
}

/// One feature, or one feature per column of a 2-D tensor.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureMap {
    /// Request tensor to read.
    pub tensor: String,
    /// Feature names of the columns of an `[n, m]` tensor, in column order (`m` names). Empty:
    /// the tensor is `[n]` or `[n, 1]` and holds one feature.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Name of the one feature when `columns` is empty; default: the tensor's name.
    #[serde(default)]
    pub name: Option<String>,
}

/// How the prediction is read from a response tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictionAs {
    /// A class: a string, or a class index looked up in `labels` (the integer itself as text
    /// when `labels` is empty).
    Label,
    /// A regressor's number.
    Value,
    /// A class from a row of class scores: `labels[argmax]` (`labels` has one name per column).
    Argmax,
}

/// The prediction.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionMap {
    /// Response tensor to read.
    pub tensor: String,
    #[serde(rename = "as")]
    pub read_as: PredictionAs,
    /// Column of an `[n, m]` tensor for `label` and `value` (default: the only column).
    #[serde(default)]
    pub column: Option<usize>,
    /// Class names by index, for `label` with numeric classes and for `argmax`.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// Class scores (probabilities).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScoresMap {
    /// Response tensor `[n, k]` of scores.
    pub tensor: String,
    /// The `k` class names, in column order.
    pub classes: Vec<String>,
}

/// The `[sources.mapping]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceMapping {
    pub model_id: ValueFrom,
    pub model_version: ValueFrom,
    /// Request tensors that hold features; may be empty (then no feature is monitored).
    #[serde(default)]
    pub features: Vec<FeatureMap>,
    pub prediction: PredictionMap,
    #[serde(default)]
    pub scores: Option<ScoresMap>,
}

impl SourceMapping {
    /// Checks what can be checked before any message: names unique and non-empty, `argmax`
    /// with labels, no version from the topic. The error names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.model_version == (ValueFrom::Topic {}) {
            return Err(
                "mapping.model_version: `from = \"topic\"` gives a model id, not a version".into(),
            );
        }
        let mut names: Vec<&str> = Vec::new();
        for f in &self.features {
            if f.tensor.is_empty() {
                return Err("mapping.features: empty `tensor`".into());
            }
            if !f.columns.is_empty() && f.name.is_some() {
                return Err(format!(
                    "mapping.features `{}`: give `columns` or `name`, not both",
                    f.tensor
                ));
            }
            if f.columns.is_empty() {
                names.push(f.name.as_deref().unwrap_or(&f.tensor));
            } else {
                names.extend(f.columns.iter().map(String::as_str));
            }
        }
        if let Some(dup) = first_duplicate(&names) {
            return Err(format!("mapping.features: feature `{dup}` named twice"));
        }
        if names.iter().any(|n| n.is_empty()) {
            return Err("mapping.features: empty feature name".into());
        }
        let p = &self.prediction;
        if p.read_as == PredictionAs::Argmax && (p.labels.is_empty() || p.column.is_some()) {
            return Err("mapping.prediction: `as = \"argmax\"` needs `labels` (one per column) and no `column`".into());
        }
        if let Some(s) = &self.scores {
            if s.classes.is_empty() {
                return Err("mapping.scores.classes: empty".into());
            }
            let classes: Vec<&str> = s.classes.iter().map(String::as_str).collect();
            if let Some(dup) = first_duplicate(&classes) {
                return Err(format!("mapping.scores.classes: `{dup}` named twice"));
            }
        }
        Ok(())
    }

    /// The predictions of one paired inference, one per row, at `timestamp` (the request's).
    pub fn predictions(
        &self,
        request: &InferenceHalf,
        response: &InferenceHalf,
        timestamp: TimestampMs,
    ) -> Result<Vec<Prediction>> {
        let model_id = response
            .model_id
            .clone()
            .or_else(|| request.model_id.clone())
            .ok_or_else(|| SourceError::MissingModel("id".into()))?;
        let model_version = response
            .model_version
            .clone()
            .or_else(|| request.model_version.clone())
            .ok_or_else(|| SourceError::MissingModel("version".into()))?;

        let predicted = tensor(response, &self.prediction.tensor)?;
        let (n, width) = predicted.rows_cols()?;
        let scores = match &self.scores {
            Some(s) => Some((s, table(response, &s.tensor, n, Some(s.classes.len()))?)),
            None => None,
        };
        let mut features = Vec::with_capacity(self.features.len());
        for f in &self.features {
            let want = if f.columns.is_empty() {
                1
            } else {
                f.columns.len()
            };
            let t = tensor(request, &f.tensor)?;
            let (rows, _) = t.rows_cols()?;
            if rows != n {
                return Err(SourceError::RowCountMismatch {
                    request: rows,
                    response: n,
                });
            }
            features.push((f, table(request, &f.tensor, n, Some(want))?));
        }

        let mut out = Vec::with_capacity(n);
        for row in 0..n {
            let request_id = if n == 1 {
                request.id.clone()
            } else {
                format!("{}/{row}", request.id)
            };
            let mut feats = Vec::new();
            for (f, t) in &features {
                if f.columns.is_empty() {
                    let name = f.name.clone().unwrap_or_else(|| f.tensor.clone());
                    feats.push((name, feature(t, row, 0)));
                } else {
                    for (col, name) in f.columns.iter().enumerate() {
                        feats.push((name.clone(), feature(t, row, col)));
                    }
                }
            }
            let (predicted_label, predicted_value) = self.predicted(predicted, row, width)?;
            let scores = match &scores {
                Some((s, t)) => Some(
                    s.classes
                        .iter()
                        .enumerate()
                        .map(|(col, class)| Ok((class.clone(), finite(t, number(t, row, col)?)?)))
                        .collect::<Result<Vec<_>>>()?,
                ),
                None => None,
            };
            out.push(Prediction {
                request_id,
                model_id: model_id.clone(),
                model_version: model_version.clone(),
                timestamp,
                features: feats,
                predicted_label,
                predicted_value,
                scores,
                tags: Vec::new(),
            });
        }
        Ok(out)
    }

    fn predicted(
        &self,
        t: &Tensor,
        row: usize,
        width: usize,
    ) -> Result<(Option<String>, Option<f64>)> {
        let p = &self.prediction;
        let column = || match p.column {
            Some(c) if c < width => Ok(c),
            None if width == 1 => Ok(0),
            _ => Err(SourceError::shape(
                &t.name,
                format!("{width} column(s); set `prediction.column` to one below {width}"),
            )),
        };
        match p.read_as {
            PredictionAs::Value => Ok((None, Some(finite(t, number(t, row, column()?)?)?))),
            PredictionAs::Label => {
                let col = column()?;
                let label = match &t.elements {
                    Elements::Texts(v) => v
                        .get(row * width + col)
                        .cloned()
                        .ok_or_else(|| SourceError::shape(&t.name, "index beyond the data"))?,
                    Elements::Numbers(_) => class_name(&t.name, number(t, row, col)?, &p.labels)?,
                };
                Ok((Some(label), None))
            }
            PredictionAs::Argmax => {
                if width != p.labels.len() {
                    return Err(SourceError::shape(
                        &t.name,
                        format!("{width} column(s) for {} labels", p.labels.len()),
                    ));
                }
                let mut best = (0, f64::NEG_INFINITY);
                for col in 0..width {
                    let x = finite(t, number(t, row, col)?)?;
                    if x > best.1 {
                        best = (col, x);
                    }
                }
                Ok((Some(p.labels[best.0].clone()), None))
            }
        }
    }
}

fn first_duplicate<'a>(names: &[&'a str]) -> Option<&'a str> {
    let mut sorted = names.to_vec();
    sorted.sort_unstable();
    sorted.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

fn tensor<'h>(half: &'h InferenceHalf, name: &str) -> Result<&'h Tensor> {
    half.tensor(name)
        .ok_or_else(|| SourceError::MissingTensor(name.to_owned()))
}

/// The tensor, checked to be `n` rows of `width` columns.
fn table<'h>(
    half: &'h InferenceHalf,
    name: &str,
    n: usize,
    width: Option<usize>,
) -> Result<&'h Tensor> {
    let t = tensor(half, name)?;
    let (rows, cols) = t.rows_cols()?;
    if rows != n {
        return Err(SourceError::RowCountMismatch {
            request: rows,
            response: n,
        });
    }
    if let Some(w) = width.filter(|&w| w != cols) {
        return Err(SourceError::shape(
            name,
            format!("{cols} column(s), the mapping names {w}"),
        ));
    }
    Ok(t)
}

fn number(t: &Tensor, row: usize, col: usize) -> Result<f64> {
    let (_, width) = t.rows_cols()?;
    match &t.elements {
        Elements::Numbers(v) => v
            .get(row * width + col)
            .copied()
            .ok_or_else(|| SourceError::shape(&t.name, "index beyond the data")),
        Elements::Texts(_) => Err(SourceError::datatype(
            &t.name,
            "BYTES where a number is needed",
        )),
    }
}

fn finite(t: &Tensor, x: f64) -> Result<f64> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(SourceError::InvalidValue(format!(
            "non-finite {x} in `{}`",
            t.name
        )))
    }
}

fn feature(t: &Tensor, row: usize, col: usize) -> FeatureValue {
    let width = t.rows_cols().map(|(_, w)| w).unwrap_or(1);
    match &t.elements {
        Elements::Numbers(v) => match v.get(row * width + col) {
            Some(x) if x.is_finite() => FeatureValue::Number(*x),
            _ => FeatureValue::Missing,
        },
        Elements::Texts(v) => v
            .get(row * width + col)
            .map_or(FeatureValue::Missing, |s| FeatureValue::Category(s.clone())),
    }
}

/// A numeric class: `labels[x]`, or `x` as an integer when there are no labels.
fn class_name(tensor: &str, x: f64, labels: &[String]) -> Result<String> {
    if x.fract() != 0.0 || !x.is_finite() || x < 0.0 {
        return Err(SourceError::InvalidValue(format!(
            "class {x} in `{tensor}` is not an index"
        )));
    }
    if labels.is_empty() {
        return Ok(format!("{x:.0}"));
    }
    labels.get(x as usize).cloned().ok_or_else(|| {
        SourceError::InvalidValue(format!(
            "class {x} in `{tensor}` beyond the {} labels",
            labels.len()
        ))
    })
}
