//! The `[[sources]]` section: one model server's topics and how to read them.
//!
//! ```toml
//! [[sources]]
//! name = "iris"
//! pair_wait = "30s"
//! [sources.seldon]            # or [sources.kserve] topics = ["kserve-logger"]
//! namespace = "seldon-mesh"
//! models = ["iris"]           # default: every model of the namespace
//! [sources.mapping]
//! model_id = { from = "topic" }
//! model_version = { from = "fixed", value = "1" }
//! features = [{ tensor = "predict", columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"] }]
//! prediction = { tensor = "predict", as = "label", labels = ["setosa", "versicolor", "virginica"] }
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SourceError};
use crate::half::{Decoded, InferenceHalf, Message};
use crate::mapping::{SourceMapping, ValueFrom};
use crate::{kserve, seldon};

/// Seldon Core 2 model topics of one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeldonConfig {
    /// Seldon's `topicPrefix` (its Kafka configuration); default `seldon`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Kubernetes namespace of the models.
    pub namespace: String,
    /// Models to read; empty: every model topic of the namespace.
    #[serde(default)]
    pub models: Vec<String>,
    /// Header holding the request id; default `x-request-id`.
    #[serde(default = "default_id_header")]
    pub request_id_header: String,
}

fn default_prefix() -> String {
    "seldon".to_owned()
}

fn default_id_header() -> String {
    seldon::REQUEST_ID_HEADER.to_owned()
}

/// Topics that KServe's inference logger writes CloudEvents to (through Knative's Kafka
/// broker or sink).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KserveConfig {
    pub topics: Vec<String>,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Name in logs, metrics and dead-letter headers.
    pub name: String,
    /// Event time a request or response waits for its other half before it is counted
    /// unpaired (`30s`, `2m`).
    #[serde(with = "humantime_serde", default = "default_pair_wait")]
    pub pair_wait: Duration,
    #[serde(default)]
    pub seldon: Option<SeldonConfig>,
    #[serde(default)]
    pub kserve: Option<KserveConfig>,
    pub mapping: SourceMapping,
}

fn default_pair_wait() -> Duration {
    Duration::from_secs(30)
}

impl SourceConfig {
    /// Checks the entry; the error names the field.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let at = |m: String| format!("sources `{}`: {m}", self.name);
        if self.name.is_empty() {
            return Err("sources: empty `name`".into());
        }
        match (&self.seldon, &self.kserve) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(at("give exactly one of `seldon` and `kserve`".into()))
            }
            (Some(s), None) if s.namespace.is_empty() || s.topic_prefix.is_empty() => {
                return Err(at("seldon: empty `namespace` or `topic_prefix`".into()))
            }
            (None, Some(k)) if k.topics.is_empty() || k.topics.iter().any(String::is_empty) => {
                return Err(at("kserve.topics: empty".into()))
            }
            _ => {}
        }
        if self.pair_wait.is_zero() || self.pair_wait > Duration::from_secs(24 * 3600) {
            return Err(at("pair_wait: between 1ms and 24h".into()));
        }
        self.mapping.validate().map_err(at)
    }

    /// What the worker subscribes to: a `^` regular expression for Seldon, topic names for
    /// KServe.
    pub fn subscription(&self) -> Vec<String> {
        match (&self.seldon, &self.kserve) {
            (Some(s), _) if s.models.is_empty() => {
                vec![seldon::topic_pattern(&s.topic_prefix, &s.namespace)]
            }
            (Some(s), _) => s
                .models
                .iter()
                .flat_map(|m| {
                    let base = format!("{}.{}.model.{m}", s.topic_prefix, s.namespace);
                    [format!("{base}.inputs"), format!("{base}.outputs")]
                })
                .collect(),
            (None, Some(k)) => k.topics.clone(),
            (None, None) => Vec::new(),
        }
    }

    /// Whether a record of `topic` belongs to this source: a KServe topic it names, or a Seldon
    /// model topic of its prefix and namespace (and of one of its models, when it names any).
    pub fn reads(&self, topic: &str) -> bool {
        match (&self.seldon, &self.kserve) {
            (Some(s), _) => {
                let base = format!("{}.{}.model.", s.topic_prefix, s.namespace);
                let Some(rest) = topic.strip_prefix(&base) else {
                    return false;
                };
                let model = rest
                    .strip_suffix(".inputs")
                    .or_else(|| rest.strip_suffix(".outputs"));
                model.is_some_and(|m| {
                    !m.is_empty()
                        && !m.contains('.')
                        && (s.models.is_empty() || s.models.iter().any(|x| x == m))
                })
            }
            (None, Some(k)) => k.topics.iter().any(|t| t == topic),
            (None, None) => false,
        }
    }

    /// Decodes one record of this source into a half with its model resolved.
    pub fn decode(&self, msg: &Message<'_>) -> Result<InferenceHalf> {
        let decoded = match (&self.seldon, &self.kserve) {
            (Some(s), _) => seldon::decode(msg, &s.request_id_header)?,
            (None, Some(_)) => kserve::decode(msg)?,
            (None, None) => {
                return Err(SourceError::UnknownContentType(
                    "source without a kind".into(),
                ))
            }
        };
        Ok(resolve(&self.mapping, msg.topic, decoded))
    }
}

fn resolve(mapping: &SourceMapping, topic: &str, d: Decoded) -> InferenceHalf {
    let read = |from: &ValueFrom, field: &Option<String>| match from {
        ValueFrom::Topic {} => Some(seldon::topic_model(topic).unwrap_or(topic).to_owned()),
        ValueFrom::Header { name } => d
            .attributes
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty()),
        ValueFrom::Field {} => field.clone(),
        ValueFrom::Fixed { value } => Some(value.clone()),
    };
    let model_id = read(&mapping.model_id, &d.model.name);
    let model_version = read(&mapping.model_version, &d.model.version);
    InferenceHalf {
        kind: d.kind,
        id: d.id,
        model_id,
        model_version,
        tensors: d.tensors,
    }
}
