//! Errors of the Kafka runtime, classified by whether retrying can help.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Result of the worker crate.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

/// What can go wrong in the Kafka runtime.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The client library reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    /// The broker does not know a topic driftwatch needs.
    #[error("topic `{topic}` does not exist on {bootstrap}: create it (`driftwatch topics create`) or fix the topic name in the configuration")]
    TopicMissing { topic: String, bootstrap: String },
    /// The two join inputs have different partition counts, so partition *i* of one would not
    /// meet partition *i* of the other.
    #[error("topics not co-partitioned: `{predictions}` has {prediction_partitions} partitions but `{ground_truth}` has {ground_truth_partitions}; the join needs equal counts (and the same partitioner, murmur2) on both")]
    NotCoPartitioned {
        predictions: String,
        prediction_partitions: usize,
        ground_truth: String,
        ground_truth_partitions: usize,
    },
    /// The broker could not be reached in time.
    #[error("broker {bootstrap} did not answer within {timeout_ms} ms: is Kafka running there? ({source})")]
    Unreachable {
        bootstrap: String,
        timeout_ms: u64,
        source: KafkaError,
    },
    /// The configuration is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The join state could not be restored from its changelog (malformed record, or the end
    /// not reached in time).
    #[error("join state: {0}")]
    State(String),
    /// A stage's task ended abnormally (it panicked).
    #[error("the {stage} stage's task failed: {message}")]
    Task {
        stage: &'static str,
        message: String,
    },
}

impl WorkerError {
    /// Whether the same operation may succeed later without a change of configuration or topics.
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkerError::Kafka(e) => kafka_error_is_retryable(e),
            WorkerError::Unreachable { .. } | WorkerError::State(_) => true,
            WorkerError::TopicMissing { .. }
            | WorkerError::NotCoPartitioned { .. }
            | WorkerError::Config(_)
            | WorkerError::Task { .. } => false,
        }
    }
}

/// Classifies a client error: transport and coordinator hiccups are retryable, fencing and
/// configuration errors are not.
pub fn kafka_error_is_retryable(e: &KafkaError) -> bool {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::ProducerFenced
            | RDKafkaErrorCode::InvalidProducerEpoch
            | RDKafkaErrorCode::Fatal
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::UnknownTopicOrPartition,
        ) => false,
        Some(_) => true,
        None => !matches!(e, KafkaError::ClientConfig(..)),
    }
}
