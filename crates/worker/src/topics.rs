//! The pipeline's topics: which ones it reads and writes ([`required`], the one list every
//! topic creation goes through), and the checks made at start-up, before any message is
//! processed.

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::clients::TopicSpec;
use crate::error::{Result, WorkerError};
use crate::settings::Settings;

/// What a topic is to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicRole {
    /// Read by the join stage: predictions and ground truth, co-partitioned.
    Input,
    /// Join stage → monitor stage: partials keyed by model id, and the join's progress records.
    Partials,
    /// Written by the join stage: input it refused, with headers naming its origin.
    DeadLetter,
    /// Written by the monitor stage: drift events, retrain events, metrics snapshots. The
    /// monitor also reads its retrain events back at start-up (retrain cooldowns).
    Output,
    /// Read by the monitor stage, written by `driftwatch profile`: reference profiles. Optional
    /// (without it, the first traffic of a model version is its reference) and shared by every
    /// deployment that names it.
    References,
    /// A stage's state (exactly-once only): created by the stage itself when missing.
    Changelog,
    /// Read by the sources stage, written by a model server (`[[sources]]`): the KServe topics
    /// and the Seldon model topics named one by one (a Seldon source of every model of a
    /// namespace subscribes by pattern, and its topics are Seldon's to create).
    Source,
}

/// How many partitions a topic gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitions {
    /// The deployment's partition count, as many as each input topic: the inputs (which must
    /// be equal), the partials (the monitor's parallelism) and the changelogs (one partition
    /// per input, resp. partials, partition; each stage checks this at start-up).
    Scaled,
    /// One partition: low-volume topics read whole.
    One,
}

/// One topic the pipeline reads or writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequiredTopic {
    pub name: String,
    pub role: TopicRole,
    pub partitions: Partitions,
    /// Topic configuration it is created with (e.g. `cleanup.policy=compact`).
    pub configs: Vec<(String, String)>,
}

impl RequiredTopic {
    /// What to create, with `scaled` partitions where the count scales with the deployment.
    pub fn spec(&self, scaled: i32) -> TopicSpec {
        TopicSpec {
            name: self.name.clone(),
            partitions: match self.partitions {
                Partitions::Scaled => scaled,
                Partitions::One => 1,
            },
            configs: self.configs.clone(),
        }
    }

    /// Whether a run with its own topics (the demo, the bench, a test) creates this one and
    /// deletes it afterwards: every topic but the shared reference profiles, and the
    /// changelogs only when the stages keep them (exactly-once).
    pub fn owned_by_run(&self, settings: &Settings) -> bool {
        match self.role {
            TopicRole::References | TopicRole::Source => false,
            TopicRole::Changelog => settings.kafka.exactly_once(),
            _ => true,
        }
    }
}

/// `max.message.bytes` of the topics that carry feature summaries (partials, references and the
/// monitor's changelog): a full numeric sample encodes to about 18 KiB, so a model with a few
/// dozen numeric features outgrows Kafka's 1 MB default in one record. Producers allow the
/// same size ([`crate::clients::producer_config`]); the topic's limit leaves room for the
/// record batch's own overhead.
pub const SUMMARY_MESSAGE_MAX_BYTES: usize = 16 << 20;

fn summary_topic_configs() -> Vec<(String, String)> {
    vec![(
        "max.message.bytes".into(),
        (SUMMARY_MESSAGE_MAX_BYTES + (64 << 10)).to_string(),
    )]
}

/// Every topic the pipeline these settings describe reads or writes, with its role, partition
/// rule and topic configuration. Topic creation (`driftwatch topics create`, the demo, the
/// bench, the integration tests) goes through this list.
pub fn required(settings: &Settings) -> Vec<RequiredTopic> {
    let t = &settings.topics;
    let topic = |name: &str, role, partitions| RequiredTopic {
        name: name.to_string(),
        role,
        partitions,
        configs: Vec::new(),
    };
    let compacted = |name: String, partitions, configs| RequiredTopic {
        name,
        role: TopicRole::Changelog,
        partitions,
        configs,
    };
    let repartition = settings
        .join
        .misrouted
        .repartitions()
        .then(|| topic(&t.repartition, TopicRole::Input, Partitions::Scaled));
    let mut all = vec![
        topic(&t.predictions, TopicRole::Input, Partitions::Scaled),
        topic(&t.ground_truth, TopicRole::Input, Partitions::Scaled),
        RequiredTopic {
            configs: summary_topic_configs(),
            ..topic(&t.model_partials, TopicRole::Partials, Partitions::Scaled)
        },
        topic(&t.dead_letter, TopicRole::DeadLetter, Partitions::One),
        topic(&t.drift_events, TopicRole::Output, Partitions::One),
        topic(&t.retrain_events, TopicRole::Output, Partitions::One),
        topic(&t.model_metrics, TopicRole::Output, Partitions::One),
        // The latest reference per model version.
        RequiredTopic {
            configs: [("cleanup.policy".into(), "compact".into())]
                .into_iter()
                .chain(summary_topic_configs())
                .collect(),
            ..topic(&t.model_references, TopicRole::References, Partitions::One)
        },
        // Join state, one partition per input partition.
        compacted(
            settings.join_changelog_topic(),
            Partitions::Scaled,
            crate::changelog::changelog_configs(),
        ),
        // Monitor state, one partition per partials partition.
        compacted(
            settings.monitor_changelog_topic(),
            Partitions::Scaled,
            crate::changelog::changelog_configs()
                .into_iter()
                .chain(summary_topic_configs())
                .collect(),
        ),
    ];
    // Misrouted input re-published by the join (`join.misrouted = "repartition"`), read by
    // the join as a third input: co-partitioned with the inputs.
    all.extend(repartition);
    if !settings.sources.is_empty() {
        // The waiting halves of every source, one partition: one member pairs them all.
        all.push(compacted(
            settings.sources_changelog_topic(),
            Partitions::One,
            crate::changelog::changelog_configs(),
        ));
        let mut named: Vec<String> = settings
            .sources
            .iter()
            .flat_map(|s| s.subscription())
            .filter(|t| !t.starts_with('^'))
            .collect();
        named.sort();
        named.dedup();
        all.extend(
            named
                .iter()
                .map(|n| topic(n, TopicRole::Source, Partitions::One)),
        );
    }
    all
}

/// The topics a run with topics of its own creates (see [`RequiredTopic::owned_by_run`]), with
/// `scaled` partitions where the count scales.
pub fn owned_by_run(settings: &Settings, scaled: i32) -> Vec<TopicSpec> {
    required(settings)
        .into_iter()
        .filter(|t| t.owned_by_run(settings))
        .map(|t| t.spec(scaled))
        .collect()
}

/// Number of partitions of `topic`, or a clear error when it does not exist or the broker does
/// not answer.
pub fn partition_count<C: ClientContext>(
    client: &Client<C>,
    bootstrap: &str,
    topic: &str,
    timeout: Duration,
) -> Result<usize> {
    let md = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|source| match source {
            KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown)
            | KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure) => {
                WorkerError::Unreachable {
                    bootstrap: bootstrap.to_string(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    source,
                }
            }
            other => WorkerError::Kafka(other),
        })?;
    let missing = || WorkerError::TopicMissing {
        topic: topic.to_string(),
        bootstrap: bootstrap.to_string(),
    };
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(missing)?;
    if t.error().is_some() || t.partitions().is_empty() {
        return Err(missing());
    }
    Ok(t.partitions().len())
}

/// Refuses to go on unless `predictions` and `ground_truth` have the same partition count.
/// Returns that count.
pub fn check_copartitioned<C: ClientContext>(
    client: &Client<C>,
    bootstrap: &str,
    predictions: &str,
    ground_truth: &str,
    timeout: Duration,
) -> Result<usize> {
    let p = partition_count(client, bootstrap, predictions, timeout)?;
    let g = partition_count(client, bootstrap, ground_truth, timeout)?;
    if p != g {
        return Err(WorkerError::NotCoPartitioned {
            predictions: predictions.to_string(),
            prediction_partitions: p,
            ground_truth: ground_truth.to_string(),
            ground_truth_partitions: g,
        });
    }
    Ok(p)
}

/// Topic look-ups against the configured brokers, for start-up checks and `check-config`.
pub struct TopicChecker {
    client: crate::clients::MetadataClient,
    bootstrap: String,
    timeout: Duration,
}

impl TopicChecker {
    /// A checker with its own metadata client.
    pub fn new(settings: &crate::settings::KafkaSettings, timeout: Duration) -> Result<Self> {
        Ok(TopicChecker {
            client: crate::clients::metadata_client(settings)?,
            bootstrap: settings.bootstrap_servers.clone(),
            timeout,
        })
    }

    /// Partition count of `topic`.
    pub fn partitions(&self, topic: &str) -> Result<usize> {
        use rdkafka::consumer::Consumer;
        partition_count(self.client.client(), &self.bootstrap, topic, self.timeout)
    }

    /// Common partition count of the two join inputs.
    pub fn copartitioned(&self, predictions: &str, ground_truth: &str) -> Result<usize> {
        use rdkafka::consumer::Consumer;
        check_copartitioned(
            self.client.client(),
            &self.bootstrap,
            predictions,
            ground_truth,
            self.timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ProcessingGuarantee;

    #[test]
    fn every_configured_topic_is_required_once() {
        let s = Settings::default();
        let t = &s.topics;
        let names: Vec<String> = required(&s).into_iter().map(|r| r.name).collect();
        let mut expected = vec![
            t.predictions.clone(),
            t.ground_truth.clone(),
            t.model_partials.clone(),
            t.dead_letter.clone(),
            t.drift_events.clone(),
            t.retrain_events.clone(),
            t.model_metrics.clone(),
            t.model_references.clone(),
            s.join_changelog_topic(),
            s.monitor_changelog_topic(),
        ];
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "a topic twice: {names:?}");
        expected.sort();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn topics_with_summaries_take_large_records() {
        let s = Settings::default();
        let t = &s.topics;
        for r in required(&s) {
            let large = r
                .configs
                .iter()
                .find(|(k, _)| k == "max.message.bytes")
                .and_then(|(_, v)| v.parse::<usize>().ok());
            let carries_summaries = r.name == t.model_partials
                || r.name == t.model_references
                || r.name == s.monitor_changelog_topic();
            assert_eq!(
                large.is_some_and(|v| v > SUMMARY_MESSAGE_MAX_BYTES),
                carries_summaries,
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn partitions_scale_where_stages_pair_partitions() {
        let s = Settings::default();
        for r in required(&s) {
            let spec = r.spec(12);
            let scaled = matches!(
                r.role,
                TopicRole::Input | TopicRole::Partials | TopicRole::Changelog
            );
            assert_eq!(spec.partitions, if scaled { 12 } else { 1 }, "{}", r.name);
            let compacted = spec
                .configs
                .iter()
                .any(|(k, v)| k == "cleanup.policy" && v == "compact");
            assert_eq!(
                compacted,
                matches!(r.role, TopicRole::Changelog | TopicRole::References),
                "{}",
                r.name
            );
        }
    }

    #[test]
    fn a_run_owns_neither_the_references_nor_unused_changelogs() {
        let mut s = Settings::default();
        let names = |s: &Settings| -> Vec<String> {
            owned_by_run(s, 4).into_iter().map(|t| t.name).collect()
        };
        let owned = names(&s);
        assert!(!owned.contains(&s.topics.model_references));
        assert!(owned.contains(&s.join_changelog_topic()));
        assert_eq!(owned.len(), 9);
        s.kafka.processing_guarantee = ProcessingGuarantee::AtLeastOnce;
        let owned = names(&s);
        assert!(!owned.contains(&s.monitor_changelog_topic()));
        assert_eq!(owned.len(), 7);
    }

    #[test]
    fn sources_add_their_changelog_and_named_topics() {
        let source = toml::from_str(
            r#"
name = "iris"
[kserve]
topics = ["kserve-logger"]
[mapping]
model_id = { from = "fixed", value = "iris" }
model_version = { from = "fixed", value = "1" }
prediction = { tensor = "predict", as = "label" }
"#,
        )
        .unwrap();
        let s = Settings {
            sources: vec![source],
            ..Settings::default()
        };
        let all = required(&s);
        let changelog = all
            .iter()
            .find(|t| t.name == s.sources_changelog_topic())
            .unwrap();
        assert_eq!(
            (changelog.role, changelog.partitions),
            (TopicRole::Changelog, Partitions::One)
        );
        let source = all.iter().find(|t| t.name == "kserve-logger").unwrap();
        assert_eq!(source.role, TopicRole::Source);
        assert!(!source.owned_by_run(&s));
    }
}
