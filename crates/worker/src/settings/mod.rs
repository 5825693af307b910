//! Connection and topic settings of the Kafka runtime.
//!
//! These are plain serde structs with `deny_unknown_fields`; the binary loads them from a TOML
//! file and `DRIFTWATCH__…` environment variables. Defaults are documented on each field.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_core::join::JoinConfig;

use serde::{Deserialize, Serialize};

use crate::error::WorkerError;
use crate::security::SecuritySettings;

mod join;
mod monitor;
mod registry;
mod sources;

pub use join::{
    JoinSettings, JoinStateSettings, MisroutedMode, ModelJoinSettings, DEFAULT_MEMORY_BUDGET,
};
pub use monitor::{MonitorSettings, OutputFormat};
pub use registry::{SchemaRegistrySettings, MIN_BACKOFF};

/// How to reach the brokers, plus any librdkafka property passed through unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Comma-separated `host:port` list. Default `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Consumer group of the join stage. Default `driftwatch-join`.
    pub join_group_id: String,
    /// `client.id` prefix, shown in broker logs and quotas. Default `driftwatch`.
    pub client_id: String,
    /// Authentication and encryption (`[kafka.security]`); default plaintext. Validated, and
    /// secret files read, when the configuration is loaded.
    #[serde(deserialize_with = "crate::security::deserialize_validated")]
    pub security: SecuritySettings,
    /// `exactly_once` (default): outputs, state changelog and input offsets are committed in
    /// one Kafka transaction (needs brokers ≥ 2.5). `at_least_once`: no transactions (e.g. a
    /// broker without them, or librdkafka's mock cluster); after a crash some input is read
    /// again, the monitor drops partials it already merged, and join state is not restored.
    pub processing_guarantee: ProcessingGuarantee,
    /// This worker's name, unique among running workers and stable across its restarts (a
    /// StatefulSet pod name): the transactional id is `<group>-<instance_id>`, so a restarted
    /// worker fences its predecessor and aborts its open transaction at once. Default: the
    /// `HOSTNAME` environment variable, else a random name (an abandoned transaction then
    /// blocks readers until `transaction_timeout`).
    pub instance_id: String,
    /// Longest a transaction may stay open before the broker aborts it. Must exceed
    /// `join.flush_interval` and `monitor.commit_interval`. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub transaction_timeout: Duration,
    /// Consumer-group protocol of the stages' members. `classic` (default): librdkafka's
    /// eager `range` assignor; every rebalance revokes every partition of every member; a
    /// static member (`instance_id`) killed and restarted gets its partitions back at once.
    /// `consumer` (KIP-848, brokers ≥ 4.0): the coordinator assigns with its `range`
    /// assignor and a membership change revokes only the partitions that move, but members
    /// are dynamic, so a killed worker's partitions wait for its session to expire (the
    /// broker's `group.consumer.session.timeout.ms`, 45 s by default). `auto`: `consumer`
    /// when the brokers offer it, else `classic`. Both keep partition *i* of both inputs on
    /// one member (docs/ARCHITECTURE.md, "Rebalances").
    pub group_protocol: GroupProtocol,
    /// How long a stage's group waits for a silent member (a killed worker) before its
    /// partitions go to the others. Under `classic` the client's `session.timeout.ms`; under
    /// `consumer` the group's own `consumer.session.timeout.ms`, set on each stage's group when
    /// the stage starts, within the brokers' `group.consumer.min.session.timeout.ms` (45 s by
    /// default, so a lower value needs the brokers' minimum lowered too). Default: unset, the
    /// brokers' (`consumer`, 45 s) or librdkafka's (`classic`, 45 s).
    #[serde(with = "humantime_serde::option")]
    pub session_timeout: Option<Duration>,
    /// How often members heartbeat; under `consumer` also how soon a member hears of an
    /// assignment change (a moved partition waits up to one interval at each end). As
    /// `session_timeout`: the client's `heartbeat.interval.ms` (`classic`) or the group's
    /// `consumer.heartbeat.interval.ms` (`consumer`, within the brokers'
    /// `group.consumer.min.heartbeat.interval.ms`). Under `consumer` the two are set on the
    /// group together; one left unset goes back to the brokers' default. Default: unset.
    #[serde(with = "humantime_serde::option")]
    pub heartbeat_interval: Option<Duration>,
    /// Any librdkafka property (e.g. `fetch.max.bytes`), applied last to every client, so it
    /// overrides driftwatch's choices. Values are never logged.
    pub properties: BTreeMap<String, String>,
}

/// Consumer-group protocol (`kafka.group_protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// `consumer` when the brokers enable it (`group.coordinator.rebalance.protocols`), else
    /// `classic`; decided once when a stage starts.
    Auto,
    /// KIP-848 (brokers ≥ 4.0): server-side `range` assignment, incremental revocation.
    Consumer,
    /// The classic protocol with librdkafka's eager `range` assignor.
    #[default]
    Classic,
}

impl GroupProtocol {
    /// The configuration word.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupProtocol::Auto => "auto",
            GroupProtocol::Consumer => "consumer",
            GroupProtocol::Classic => "classic",
        }
    }
}

/// Delivery guarantee of both stages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessingGuarantee {
    /// Kafka transactions (Kafka Streams' `exactly_once_v2`).
    #[default]
    ExactlyOnce,
    /// Offsets committed after delivery; duplicates possible after a crash.
    AtLeastOnce,
}

impl KafkaSettings {
    /// Whether the stages use transactions.
    pub fn exactly_once(&self) -> bool {
        self.processing_guarantee == ProcessingGuarantee::ExactlyOnce
    }

    /// The instance name in force: `instance_id`, else `HOSTNAME`, else a random one (each
    /// call its own, so two stages of one process never share a transactional id).
    pub fn instance(&self) -> String {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        if !self.instance_id.trim().is_empty() {
            return self.instance_id.trim().to_string();
        }
        match std::env::var("HOSTNAME") {
            Ok(h) if !h.trim().is_empty() => h.trim().to_string(),
            _ => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                format!("{}-{:x}-{n}", std::process::id(), nanos & 0xffff_ffff_ffff)
            }
        }
    }
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings {
            bootstrap_servers: "127.0.0.1:9092".into(),
            join_group_id: "driftwatch-join".into(),
            client_id: "driftwatch".into(),
            security: SecuritySettings::default(),
            processing_guarantee: ProcessingGuarantee::ExactlyOnce,
            instance_id: String::new(),
            transaction_timeout: Duration::from_secs(10),
            group_protocol: GroupProtocol::Classic,
            session_timeout: None,
            heartbeat_interval: None,
            properties: BTreeMap::new(),
        }
    }
}

/// Topic names. Defaults are the names in `schemas/README.md`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicNames {
    /// Input: predictions, keyed by request id. Default `predictions`.
    pub predictions: String,
    /// Input: ground truth, keyed by request id. Default `ground-truth`.
    pub ground_truth: String,
    /// Internal: join stage → monitor stage partials, keyed by model id.
    /// Default `driftwatch.model-partials`.
    pub model_partials: String,
    /// Bad input with headers naming its origin and the error. Default `driftwatch.dead-letter`.
    pub dead_letter: String,
    /// Output: drift events. Default `drift-events`.
    pub drift_events: String,
    /// Output: retrain events. Default `retrain-events`.
    pub retrain_events: String,
    /// Output: metrics snapshots. Default `model-metrics`.
    pub model_metrics: String,
    /// Reference profiles from training data (`driftwatch profile`), compacted, keyed by
    /// `model_id/model_version`; the monitor reads it at start-up and follows it.
    /// Default `model-references`.
    pub model_references: String,
    /// Internal, compacted: the join state, one partition per input partition. Empty (the
    /// default) means `<kafka.join_group_id>-changelog`, so each deployment has its own. The
    /// join stage creates it when missing (exactly-once only).
    pub join_changelog: String,
    /// Internal, compacted: the monitor state (one snapshot per model, keyed by model id), one
    /// partition per partials partition. Empty (the default) means
    /// `<monitor.group_id>-changelog`. The monitor stage creates it when missing (exactly-once
    /// only).
    pub monitor_changelog: String,
    /// Internal, with `join.misrouted = "repartition"` only: misrouted input records
    /// re-published on their key's murmur2 partition (keyed by request id, the original topic
    /// in the `driftwatch.repartition.topic` header); the join reads it as a third input.
    /// Same partition count as the inputs. Default `driftwatch.repartition`.
    pub repartition: String,
}

impl Default for TopicNames {
    fn default() -> Self {
        TopicNames {
            predictions: "predictions".into(),
            ground_truth: "ground-truth".into(),
            model_partials: "driftwatch.model-partials".into(),
            dead_letter: "driftwatch.dead-letter".into(),
            drift_events: "drift-events".into(),
            retrain_events: "retrain-events".into(),
            model_metrics: "model-metrics".into(),
            model_references: "model-references".into(),
            join_changelog: String::new(),
            monitor_changelog: String::new(),
            repartition: "driftwatch.repartition".into(),
        }
    }
}

/// Everything a `driftwatch run` needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub kafka: KafkaSettings,
    pub topics: TopicNames,
    pub join: JoinSettings,
    pub monitor: MonitorSettings,
    pub http: HttpSettings,
    /// Writer schemas of framed payloads from a Confluent-compatible Schema Registry.
    pub schema_registry: SchemaRegistrySettings,
    /// Model-server topics the sources stage reads (`[[sources]]`, see [`sources`]).
    pub sources: Vec<driftwatch_oip::SourceConfig>,
}

/// The metrics and health endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Serve `/metrics`, `/healthz`, `/readyz` and the console (`/`). Default true.
    pub enabled: bool,
    /// Listen address. Default `0.0.0.0:9898`.
    pub bind: std::net::SocketAddr,
    /// Most model ids exported as their own label value; the rest are summed into
    /// `model="_other"`, so a tenant with thousands of models cannot blow up the time-series
    /// database. Default 100.
    pub max_exported_models: usize,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: true,
            bind: std::net::SocketAddr::from(([0, 0, 0, 0], 9898)),
            max_exported_models: 100,
        }
    }
}

impl Settings {
    /// Cross-field checks, with a message that says what to change.
    pub fn validate(&self) -> Result<(), WorkerError> {
        let bad = |m: String| Err(WorkerError::Config(m));
        self.schema_registry.validate()?;
        if self.monitor.output_format == OutputFormat::AvroRegistry
            && !self.schema_registry.enabled()
        {
            return bad(
                "monitor.output_format = \"avro_registry\" needs schema_registry.url: the schemas of the outputs are registered there".into(),
            );
        }
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return bad("kafka.bootstrap_servers is empty: set it to host:port of a broker".into());
        }
        // The join reads partition i of both inputs on one member: only `range` assigns so.
        for key in ["partition.assignment.strategy", "group.remote.assignor"] {
            if let Some(v) = self.kafka.properties.get(key) {
                if v.trim() != "range" {
                    return bad(format!(
                        "kafka.properties sets {key} = `{v}`: the join needs partition i of both inputs on one worker, which only the `range` assignor guarantees; remove it"
                    ));
                }
            }
        }
        if self.join.standby_replicas > 0 {
            if self.join.state.dir().is_none() {
                return bad(format!(
                    "join.standby_replicas = {} needs join.state.dir: standbys are kept in the local store",
                    self.join.standby_replicas
                ));
            }
            if !self.kafka.exactly_once() {
                return bad(format!(
                    "join.standby_replicas = {} needs kafka.processing_guarantee = \"exactly_once\": without it the join keeps no changelog to follow",
                    self.join.standby_replicas
                ));
            }
        }
        if let (Some(session), Some(heartbeat)) =
            (self.kafka.session_timeout, self.kafka.heartbeat_interval)
        {
            if heartbeat >= session {
                return bad(format!(
                    "kafka.heartbeat_interval ({heartbeat:?}) must be below kafka.session_timeout ({session:?}): a member would time out between two heartbeats"
                ));
            }
        }
        for (key, d) in [
            ("kafka.session_timeout", self.kafka.session_timeout),
            ("kafka.heartbeat_interval", self.kafka.heartbeat_interval),
        ] {
            if d.is_some_and(|d| d < Duration::from_millis(100)) {
                return bad(format!(
                    "{key} is below 100ms: Kafka counts it in milliseconds and refuses such values"
                ));
            }
        }
        if let Some(v) = self.kafka.properties.get("group.protocol") {
            return bad(format!(
                "kafka.properties sets group.protocol = `{v}`: use kafka.group_protocol (auto | consumer | classic) instead"
            ));
        }
        let t = &self.topics;
        if t.predictions == t.ground_truth {
            return bad(format!(
                "topics.predictions and topics.ground_truth are both `{}`: they must differ",
                t.predictions
            ));
        }
        let outputs = [
            &t.model_references,
            &t.model_partials,
            &t.dead_letter,
            &t.drift_events,
            &t.retrain_events,
            &t.model_metrics,
        ];
        for o in outputs {
            if *o == t.predictions || *o == t.ground_truth {
                return bad(format!("output topic `{o}` is also an input topic"));
            }
        }
        let join_changelog = self.join_changelog_topic();
        let monitor_changelog = self.monitor_changelog_topic();
        for (stage, changelog) in [("join", &join_changelog), ("monitor", &monitor_changelog)] {
            if [&t.predictions, &t.ground_truth]
                .into_iter()
                .chain(outputs)
                .any(|o| o == changelog)
            {
                return bad(format!(
                    "the {stage} changelog `{changelog}` is also an input or output topic: it must be its own"
                ));
            }
        }
        if self.join.misrouted.repartitions() {
            if !self.kafka.exactly_once() {
                return bad(
                    "join.misrouted = \"repartition\" needs kafka.processing_guarantee = exactly_once: the re-published copy and the input offset must commit together, or a crash duplicates or loses the record".into(),
                );
            }
            let r = &t.repartition;
            if r.trim().is_empty()
                || [
                    &t.predictions,
                    &t.ground_truth,
                    &join_changelog,
                    &monitor_changelog,
                ]
                .into_iter()
                .chain(outputs)
                .any(|o| o == r)
            {
                return bad(format!(
                    "topics.repartition (`{r}`) must be set and differ from every other topic"
                ));
            }
        }
        if join_changelog == monitor_changelog {
            return bad(format!(
                "the join and monitor changelogs are both `{join_changelog}`: each stage needs its own"
            ));
        }
        let j = &self.join;
        if self.kafka.exactly_once()
            && (self.kafka.transaction_timeout <= j.flush_interval
                || self.kafka.transaction_timeout <= self.monitor.commit_interval)
        {
            return bad(format!(
                "kafka.transaction_timeout ({:?}) must exceed join.flush_interval ({:?}) and monitor.commit_interval ({:?}): a transaction stays open that long",
                self.kafka.transaction_timeout, j.flush_interval, self.monitor.commit_interval
            ));
        }
        if j.bucket_width.is_zero() || j.flush_interval.is_zero() {
            return bad("join.bucket_width and join.flush_interval must be positive".into());
        }
        if j.max_message_bytes == 0 || j.max_queued_records == 0 {
            return bad(
                "join.max_message_bytes and join.max_queued_records must be positive".into(),
            );
        }
        if !(0.0..1.0).contains(&j.misrouted_alert_share) {
            return bad(format!(
                "join.misrouted_alert_share ({}) must be at least 0 and below 1",
                j.misrouted_alert_share
            ));
        }
        let m = &self.monitor;
        if m.commit_interval.is_zero() || m.metrics_interval.is_zero() {
            return bad(
                "monitor.commit_interval and monitor.metrics_interval must be positive".into(),
            );
        }
        if m.group_id == self.kafka.join_group_id {
            return bad(format!(
                "monitor.group_id and kafka.join_group_id are both `{}`: each stage needs its own consumer group",
                m.group_id
            ));
        }
        m.detection
            .validate()
            .map_err(|e| WorkerError::Config(format!("monitor.detection: {e}")))?;
        if m.standby_replicas > 0 && !self.kafka.exactly_once() {
            return bad(format!(
                "monitor.standby_replicas = {} needs kafka.processing_guarantee = \"exactly_once\": standbys follow the monitor changelog, which only exactly-once keeps",
                m.standby_replicas
            ));
        }
        j.state.validate()?;
        self.validate_sources()?;
        self.join_config()?
            .validate()
            .map_err(|e| WorkerError::Config(e.to_string()))
    }

    /// The join changelog topic in force (see [`TopicNames::join_changelog`]).
    pub fn join_changelog_topic(&self) -> String {
        if self.topics.join_changelog.trim().is_empty() {
            format!("{}-changelog", self.kafka.join_group_id)
        } else {
            self.topics.join_changelog.clone()
        }
    }

    /// The monitor changelog topic in force (see [`TopicNames::monitor_changelog`]).
    pub fn monitor_changelog_topic(&self) -> String {
        if self.topics.monitor_changelog.trim().is_empty() {
            format!("{}-changelog", self.monitor.group_id)
        } else {
            self.topics.monitor_changelog.clone()
        }
    }

    /// The core join configuration these settings describe.
    pub fn join_config(&self) -> Result<JoinConfig, WorkerError> {
        let ms = |name: &str, d: Duration| {
            i64::try_from(d.as_millis())
                .map_err(|_| WorkerError::Config(format!("join.{name} is too large")))
        };
        let j = &self.join;
        let mut overrides = BTreeMap::new();
        for (model, m) in &j.models {
            overrides.insert(model.clone(), ms("models.label_timeout", m.label_timeout)?);
        }
        Ok(JoinConfig {
            label_timeout_ms: ms("label_timeout", j.label_timeout)?,
            orphan_timeout_ms: ms("orphan_timeout", j.orphan_timeout)?,
            allowed_lateness_ms: ms("allowed_lateness", j.allowed_lateness)?,
            max_task_idle_ms: ms("max_task_idle", j.max_task_idle)?,
            idle_timeout_ms: ms("idle_timeout", j.idle_timeout)?,
            label_timeout_overrides_ms: overrides,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_outputs_need_a_registry() {
        let mut s = Settings::default();
        s.monitor.output_format = OutputFormat::AvroRegistry;
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("schema_registry.url"), "{e}");
        s.schema_registry.url = "http://registry:8081".into();
        s.validate().unwrap();
    }

    #[test]
    fn a_heartbeat_must_come_within_the_session_timeout() {
        let mut s = Settings::default();
        s.kafka.session_timeout = Some(Duration::from_secs(6));
        s.kafka.heartbeat_interval = Some(Duration::from_secs(6));
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("kafka.heartbeat_interval"), "{e}");
        s.kafka.heartbeat_interval = Some(Duration::from_secs(1));
        s.validate().expect("valid");
        let parsed: KafkaSettings =
            serde_json::from_str(r#"{"session_timeout": "8s", "heartbeat_interval": "500ms"}"#)
                .expect("parsed");
        assert_eq!(parsed.session_timeout, Some(Duration::from_secs(8)));
        assert_eq!(parsed.heartbeat_interval, Some(Duration::from_millis(500)));
    }

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults valid");
    }

    #[test]
    fn assignors_that_split_partition_pairs_are_refused() {
        for (key, value) in [
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("group.remote.assignor", "uniform"),
        ] {
            let mut s = Settings::default();
            s.kafka.properties.insert(key.into(), value.into());
            let e = s.validate().expect_err("refused").to_string();
            assert!(e.contains(key) && e.contains("range"), "{e}");
            s.kafka.properties.insert(key.into(), "range".into());
            s.validate()
                .expect("range keeps partition i of both inputs together");
        }
        let mut s = Settings::default();
        s.kafka
            .properties
            .insert("group.protocol".into(), "consumer".into());
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("kafka.group_protocol"), "{e}");
    }

    #[test]
    fn the_group_protocol_is_read_by_name() {
        let s: KafkaSettings =
            serde_json::from_str(r#"{"group_protocol": "consumer"}"#).expect("parsed");
        assert_eq!(s.group_protocol, GroupProtocol::Consumer);
        assert_eq!(
            KafkaSettings::default().group_protocol,
            GroupProtocol::Classic
        );
        assert!(serde_json::from_str::<KafkaSettings>(r#"{"group_protocol": "eager"}"#).is_err());
    }

    #[test]
    fn repartition_needs_exactly_once_and_a_topic_of_its_own() {
        let mut s = Settings::default();
        s.join.misrouted = MisroutedMode::Repartition;
        s.validate().expect("exactly-once by default");
        s.topics.repartition = s.topics.ground_truth.clone();
        let e = s.validate().expect_err("shared").to_string();
        assert!(e.contains("topics.repartition"), "{e}");
        s.topics.repartition = "r".into();
        s.kafka.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
        let e = s.validate().expect_err("at-least-once").to_string();
        assert!(
            e.contains("join.misrouted") && e.contains("exactly_once"),
            "{e}"
        );
        let j: JoinSettings =
            serde_json::from_str(r#"{"misrouted": "repartition"}"#).expect("parsed");
        assert_eq!(j.misrouted, MisroutedMode::Repartition);
        assert!(serde_json::from_str::<JoinSettings>(r#"{"misrouted": "drop"}"#).is_err());
    }

    #[test]
    fn same_input_topics_are_refused() {
        let mut s = Settings::default();
        s.topics.ground_truth = s.topics.predictions.clone();
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("must differ"), "{e}");
    }

    #[test]
    fn a_misrouted_alert_share_outside_zero_to_one_is_refused_naming_the_field() {
        let mut s = Settings::default();
        for bad in [-0.1, 1.0, f64::NAN] {
            s.join.misrouted_alert_share = bad;
            let e = s.validate().expect_err("refused").to_string();
            assert!(e.contains("join.misrouted_alert_share"), "{e}");
        }
        s.join.misrouted_alert_share = 0.0;
        s.validate().expect("0 flags any misrouted record");
    }

    #[test]
    fn a_transaction_timeout_below_the_commit_interval_is_refused() {
        let mut s = Settings::default();
        s.join.flush_interval = Duration::from_secs(20);
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("kafka.transaction_timeout"), "{e}");
        s.kafka.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
        s.validate()
            .expect("no transactions, no timeout to respect");
    }

    #[test]
    fn the_changelogs_are_named_after_the_groups_unless_set() {
        let mut s = Settings::default();
        assert_eq!(s.join_changelog_topic(), "driftwatch-join-changelog");
        assert_eq!(s.monitor_changelog_topic(), "driftwatch-monitor-changelog");
        s.topics.join_changelog = s.topics.predictions.clone();
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("join changelog"), "{e}");
        let mut s = Settings::default();
        s.topics.monitor_changelog = s.topics.drift_events.clone();
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("monitor changelog"), "{e}");
        s.topics.monitor_changelog = s.join_changelog_topic();
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("each stage needs its own"), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = serde_json::from_str::<Settings>(r#"{"kafka": {"bootstrap": "x"}}"#)
            .expect_err("unknown field");
        assert!(e.to_string().contains("unknown field `bootstrap`"), "{e}");
    }

    #[test]
    fn durations_and_overrides_reach_the_join_config() {
        let s: Settings = serde_json::from_str(
            r#"{"join": {"label_timeout": "2h", "models": {"churn": {"label_timeout": "7days"}}}}"#,
        )
        .expect("parse");
        let c = s.join_config().expect("config");
        assert_eq!(c.label_timeout_ms, 2 * 3_600_000);
        assert_eq!(c.label_timeout_for("churn"), 7 * 24 * 3_600_000);
        assert_eq!(c.label_timeout_for("other"), 2 * 3_600_000);
    }

    #[test]
    fn too_long_retention_is_refused_with_the_field_name() {
        let s: Settings =
            serde_json::from_str(r#"{"join": {"label_timeout": "30days"}}"#).expect("parse");
        let e = s.validate().expect_err("refused").to_string();
        assert!(e.contains("label_timeout"), "{e}");
    }
}
