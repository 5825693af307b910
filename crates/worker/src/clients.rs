//! librdkafka client configurations: the choices the join depends on, in one place.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Result, WorkerError};
use crate::settings::KafkaSettings;

/// Consumer configuration of a stage's consumer group.
///
/// - `partition.assignment.strategy=range`: with equal partition counts, librdkafka's range
///   assignor gives partition *i* of both inputs to the same member; `cooperative-sticky` does not.
/// - offsets are stored explicitly after the work is done (`enable.auto.offset.store=false`),
///   never auto-committed ahead of processing.
/// - `isolation.level=read_committed`: only committed transactional output is read.
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", group_id)
        .set("client.id", format!("{}-consumer", settings.client_id))
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    apply_passthrough(&mut c, settings);
    c
}

/// Producer configuration.
///
/// `partitioner=murmur2_random` is the Java client's default: a key lands on the same partition
/// number whichever client wrote it, which the join relies on (librdkafka's own default,
/// `consistent_random`, would scatter the same request id differently).
pub fn producer_config(settings: &KafkaSettings) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-producer", settings.client_id))
        .set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("compression.type", "lz4");
    apply_passthrough(&mut c, settings);
    c
}

fn apply_passthrough(c: &mut ClientConfig, settings: &KafkaSettings) {
    for (k, v) in &settings.properties {
        c.set(k, v);
    }
}

/// One topic to create.
#[derive(Debug, Clone)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Topic configs, e.g. `("cleanup.policy", "compact")`.
    pub configs: Vec<(String, String)>,
}

/// Creates topics that do not exist yet; existing topics are left as they are.
pub async fn create_topics(settings: &KafkaSettings, specs: &[TopicSpec]) -> Result<()> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.bootstrap_servers);
    apply_passthrough(&mut cfg, settings);
    let admin: AdminClient<DefaultClientContext> = cfg.create()?;
    let new_topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(&new_topics, &opts).await?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(WorkerError::Config(format!(
                    "could not create topic `{topic}`: {code}"
                )))
            }
        }
    }
    Ok(())
}

/// A client for metadata look-ups (topic checks); it joins no group.
pub type MetadataClient = BaseConsumer;

/// Creates a [`MetadataClient`].
pub fn metadata_client(settings: &KafkaSettings) -> Result<MetadataClient> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-metadata", settings.client_id));
    apply_passthrough(&mut c, settings);
    Ok(c.create()?)
}
