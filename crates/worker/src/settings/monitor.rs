//! Settings of the monitor stage.

use std::time::Duration;

use driftwatch_core::monitor::MonitorConfig;
use serde::{Deserialize, Serialize};

/// How the monitor stage writes drift events, retrain events and metrics snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    /// Bare Avro datums of the schemas in `schemas/`.
    #[default]
    Avro,
    /// The documented JSON form (easiest for orchestrators' Kafka sensors).
    Json,
    /// Avro datums in the Confluent wire format (`0x00`, the 4-byte schema id, the datum),
    /// each topic's schema registered at start with `[schema_registry]` under
    /// `<topic>-value`, as registry-aware deserializers expect. Needs `schema_registry.url`.
    AvroRegistry,
}

/// Settings of the monitor stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorSettings {
    /// Consumer group of the monitor stage. Default `driftwatch-monitor`.
    pub group_id: String,
    /// How often the output of the epochs judged since the last time (drift and retrain
    /// events, changed state) is published and the partials' offsets committed (processing
    /// time). Verdicts do not depend on it: the monitor judges at event-time epoch ends as the
    /// join's announced watermarks pass them. Default `1s`.
    #[serde(with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How often metrics snapshots are published. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Encoding of the output topics: `avro` (bare datums), `json`, or `avro_registry`
    /// (framed with ids of `[schema_registry]`). Default `avro`.
    pub output_format: OutputFormat,
    /// Windows, detectors, hysteresis and retrain policy: a default profile plus overrides by
    /// model id (`[monitor.detection.default]`, `[monitor.detection.models.<id>]`).
    pub detection: MonitorConfig,
    /// Standby replicas of the monitor state (exactly-once only): a worker keeps the latest
    /// monitor changelog record of every key of partitions it does not own, so a partition
    /// that moves to it replays only the changelog's tail. Which partitions: as for
    /// `join.standby_replicas` (under the `consumer` protocol every partition it does not
    /// own). Costs the memory of those records (the live part of the changelog). Default `0`.
    pub standby_replicas: usize,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            group_id: "driftwatch-monitor".into(),
            commit_interval: Duration::from_secs(1),
            metrics_interval: Duration::from_secs(10),
            output_format: OutputFormat::Avro,
            detection: MonitorConfig::default(),
            standby_replicas: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::settings::Settings;

    #[test]
    fn monitor_standby_replicas_need_exactly_once() {
        let s: Settings = serde_json::from_str(
            r#"{"monitor": {"standby_replicas": 1},
                "kafka": {"processing_guarantee": "at_least_once"}}"#,
        )
        .expect("parse");
        let e = s.validate().expect_err("refused at least once").to_string();
        assert!(
            e.contains("monitor.standby_replicas") && e.contains("exactly_once"),
            "{e}"
        );
        let s: Settings =
            serde_json::from_str(r#"{"monitor": {"standby_replicas": 1}}"#).expect("parse");
        s.validate().expect("valid");
        assert_eq!(Settings::default().monitor.standby_replicas, 0);
    }
}
