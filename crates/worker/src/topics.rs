//! Topic checks made at start-up, before any message is processed.

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Result, WorkerError};

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
