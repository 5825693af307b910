//! librdkafka client configurations: the choices the join depends on, in one place.
//!
//! Every client driftwatch creates (consumer, producer, admin, metadata) goes through
//! [`apply_common`]: the security settings of `[kafka.security]` first, then the pass-through
//! `properties`, so an operator can still override any property.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Result, WorkerError};
use crate::handshake::TlsFailure;
use crate::settings::{GroupProtocol, KafkaSettings};

/// Consumer configuration of a stage's consumer group.
///
/// - `partition.assignment.strategy=range`: with equal partition counts, librdkafka's range
///   assignor gives partition *i* of both inputs to the same member; `cooperative-sticky` does not.
/// - nothing is stored or committed automatically (`enable.auto.offset.store=false`,
///   `enable.auto.commit=false`): a stage commits offsets itself once the output of that work
///   is delivered.
/// - `isolation.level=read_committed`: only committed transactional output is read.
/// - `max.partition.fetch.bytes=4 MiB` (librdkafka's default is 1 MiB): fewer, larger fetches,
///   which made catching up on a backlog of both inputs much faster on the benchmark machine
///   (BENCHMARKS.md, and docs/perf-log.md for the run before and after); `kafka.properties`
///   can set it back. The join's consumer sizes it, and librdkafka's pre-fetch, from its
///   memory budget instead ([`crate::client_memory`]).
pub fn consumer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("group.id", group_id)
        .set("client.id", format!("{}-consumer", settings.client_id))
        .set("partition.assignment.strategy", "range")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("max.partition.fetch.bytes", "4194304");
    apply_common_infallible(&mut c, settings);
    c
}

/// [`consumer_config`] for a stage's group member, speaking `protocol` (resolved by
/// [`crate::group_protocol::resolve`]; `auto` is taken as `classic`). Under `consumer`
/// (KIP-848) the coordinator assigns with its `range` assignor, asked for by name
/// (`group.remote.assignor`), and the client-side assignor setting is dropped (the protocol
/// refuses it).
///
/// Under `classic`, an explicit `kafka.instance_id` makes the member static
/// (`group.instance.id`): a worker restarted within `session.timeout.ms` gets its partitions
/// back without a rebalance of the whole group, instead of waiting for its dead predecessor to
/// time out. Under `consumer` the member is always dynamic: KIP-848 refuses a static member
/// whose predecessor was killed (`UNRELEASED_INSTANCE_ID`, fatal) until the predecessor's
/// session expires, which a dynamic member waits out without failing.
pub fn member_config(
    settings: &KafkaSettings,
    group_id: &str,
    protocol: GroupProtocol,
) -> ClientConfig {
    let mut c = consumer_config(settings, group_id);
    if protocol == GroupProtocol::Consumer {
        c.remove("partition.assignment.strategy");
        c.set("group.protocol", "consumer")
            .set("group.remote.assignor", "range");
    }
    if protocol != GroupProtocol::Consumer {
        // Under `consumer` these are the group's ([`crate::group_protocol::set_group_timeouts`]).
        if let Some(d) = settings.session_timeout {
            c.set("session.timeout.ms", d.as_millis().to_string());
        }
        if let Some(d) = settings.heartbeat_interval {
            c.set("heartbeat.interval.ms", d.as_millis().to_string());
        }
        if !settings.instance_id.trim().is_empty() {
            c.set(
                "group.instance.id",
                format!("{group_id}-{}", settings.instance_id.trim()),
            );
        }
        // Pass-through properties still win.
        for (k, v) in &settings.properties {
            c.set(k, v);
        }
    }
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
        .set("compression.type", "lz4")
        .set(
            "message.max.bytes",
            crate::topics::SUMMARY_MESSAGE_MAX_BYTES.to_string(),
        );
    apply_common_infallible(&mut c, settings);
    c
}

/// Configuration of a stage's transactional producer (exactly-once): `transactional.id` is
/// `<group>-<instance>` (see [`KafkaSettings::instance`]); the local queue is large enough to
/// hold a commit interval of changelog records without blocking. The join stage bounds it by
/// its memory budget instead ([`crate::client_memory`]): a queue of 2 M records is about
/// 500 MB of librdkafka's memory.
pub fn transactional_producer_config(settings: &KafkaSettings, group_id: &str) -> ClientConfig {
    let mut c = producer_config(settings);
    c.set(
        "transactional.id",
        format!("{group_id}-{}", settings.instance()),
    )
    .set(
        "transaction.timeout.ms",
        settings.transaction_timeout.as_millis().to_string(),
    )
    .set("queue.buffering.max.messages", "2000000")
    .set("queue.buffering.max.kbytes", "1048576");
    // Pass-through properties still win.
    for (k, v) in &settings.properties {
        c.set(k, v);
    }
    c
}

/// Applies `[kafka.security]` and then the pass-through properties to `c`.
///
/// Fails only when a secret file named in the settings cannot be read any more (it was read
/// when the configuration was loaded).
pub fn apply_common(c: &mut ClientConfig, settings: &KafkaSettings) -> Result<()> {
    settings
        .security
        .apply(c)
        .map_err(|e| WorkerError::Config(e.to_string()))?;
    for (k, v) in &settings.properties {
        c.set(k, v);
    }
    Ok(())
}

/// [`apply_common`] for the configuration builders that cannot fail. An unreadable secret file
/// is logged (by name) and the password left unset, so creating the client then fails with
/// librdkafka's "sasl.username and sasl.password must be set".
fn apply_common_infallible(c: &mut ClientConfig, settings: &KafkaSettings) {
    if let Err(e) = apply_common(c, settings) {
        tracing::error!("{e}");
        for (k, v) in &settings.properties {
            c.set(k, v);
        }
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
    cfg.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-admin", settings.client_id));
    apply_common(&mut cfg, settings)?;
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
    // The controller has the topics; brokers learn them a moment later. Return only when
    // metadata shows every partition, so the caller's next look-up does not miss them.
    let settings = settings.clone();
    let specs = specs.to_vec();
    tokio::task::spawn_blocking(move || wait_until_visible(&settings, &specs))
        .await
        .map_err(|e| WorkerError::Config(format!("waiting for new topics: {e}")))?
}

/// Deletes topics (a benchmark's or a test's own); a topic already gone is not an error.
pub async fn delete_topics(settings: &KafkaSettings, names: &[&str]) -> Result<()> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-admin", settings.client_id));
    apply_common(&mut cfg, settings)?;
    let admin: AdminClient<DefaultClientContext> = cfg.create()?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for r in admin.delete_topics(names, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(WorkerError::Config(format!(
                    "could not delete topic `{topic}`: {code}"
                )))
            }
        }
    }
    Ok(())
}

fn wait_until_visible(settings: &KafkaSettings, specs: &[TopicSpec]) -> Result<()> {
    use rdkafka::consumer::Consumer;
    let client = metadata_client(settings)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for spec in specs {
        loop {
            let seen = client
                .fetch_metadata(Some(&spec.name), Duration::from_secs(5))
                .ok()
                .and_then(|md| {
                    md.topics()
                        .iter()
                        .find(|t| t.name() == spec.name && t.error().is_none())
                        .map(|t| t.partitions().len())
                });
            if seen.is_some_and(|n| n >= usize::try_from(spec.partitions).unwrap_or(0)) {
                break;
            }
            if std::time::Instant::now() > deadline {
                return Err(WorkerError::Config(format!(
                    "topic `{}` was created but did not appear in the metadata within 30 s",
                    spec.name
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
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
    apply_common(&mut c, settings)?;
    Ok(c.create()?)
}

/// Client context of [`probe`]: remembers an authentication or TLS handshake failure that
/// librdkafka reports only in its log (a metadata request then just fails with "transport
/// failure"), and forwards librdkafka's log lines to `tracing`.
#[derive(Default)]
pub struct ProbeContext {
    auth_failure: std::sync::Mutex<Option<String>>,
    tls_failure: std::sync::Mutex<Option<String>>,
}

impl ProbeContext {
    /// The last authentication failure librdkafka reported, if any.
    pub fn authentication_failure(&self) -> Option<String> {
        self.auth_failure.lock().map(|g| g.clone()).unwrap_or(None)
    }

    /// The last TLS failure librdkafka reported, if any.
    pub fn tls_failure(&self) -> Option<String> {
        self.tls_failure.lock().map(|g| g.clone()).unwrap_or(None)
    }

    fn remember(&self, reason: &str) {
        if let Ok(mut g) = self.auth_failure.lock() {
            *g = Some(reason.to_string());
        }
    }

    fn remember_tls(&self, reason: &str) {
        if let Ok(mut g) = self.tls_failure.lock() {
            *g = Some(reason.to_string());
        }
    }
}

impl ClientContext for ProbeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // librdkafka's words for a refused login, e.g. "SASL authentication error:
        // Authentication failed during authentication due to invalid credentials ...".
        if message.contains("SASL authentication error")
            || message.contains("Authentication failed")
        {
            self.remember(message);
        }
        if is_tls_failure(message) {
            self.remember_tls(message);
        }
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication) {
            self.remember(reason);
        }
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::SSL) || is_tls_failure(reason) {
            self.remember_tls(reason);
        }
        tracing::error!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for ProbeContext {}

/// librdkafka's words for a failed TLS handshake, or for a TLS alert received after it (under
/// TLS 1.3 a broker refuses a client certificate only once the client thinks the handshake is
/// done: "Receive failed: ... SSL routines::sslv3 alert bad certificate").
fn is_tls_failure(message: &str) -> bool {
    message.contains("SSL handshake failed")
        || message.contains("SSL transport error")
        || message.contains("SSL routines")
}

/// Connects to the brokers and fetches the cluster metadata: succeeds when the brokers answer
/// and accept the credentials. Returns the number of brokers.
///
/// A refused login is a configuration error naming the mechanism and user (never the
/// password); a failed TLS handshake one naming the `kafka.security` setting at fault
/// ([`TlsFailure`]); silence is [`WorkerError::Unreachable`]. Call it at start-up before anything
/// else talks to the brokers, so a wrong password is not reported as "broker did not answer".
/// Blocks up to `timeout` (use `spawn_blocking` on an async runtime).
pub fn probe(settings: &KafkaSettings, timeout: Duration) -> Result<usize> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-probe", settings.client_id));
    apply_common(&mut c, settings)?;
    // A TLS file that cannot be loaded (a missing file, a wrong key password) fails here.
    let client: BaseConsumer<ProbeContext> = c
        .create_with_context(ProbeContext::default())
        .map_err(|e| match settings.security.protocol.uses_tls() {
            true => WorkerError::Config(format!(
                "kafka.security: the TLS files cannot be loaded (check ssl_ca_location, \
                     ssl_certificate_location, ssl_key_location and the key's password): {e}"
            )),
            false => WorkerError::Kafka(e),
        })?;
    // librdkafka reports a refused login only as a log line and an error event, both queued
    // (rdkafka sets `log.queue`): ask in short rounds and poll the queue in between, so a wrong
    // password is reported within about a second, not after the whole timeout.
    let deadline = std::time::Instant::now() + timeout;
    let round = Duration::from_secs(1).min(timeout);
    loop {
        let result = client.fetch_metadata(None, round);
        let _ = client.poll(Duration::from_millis(50));
        if let Some(reason) = client.context().authentication_failure() {
            let s = &settings.security;
            let mechanism = s.sasl_mechanism.map(|m| m.as_str()).unwrap_or("none");
            let user = s.sasl_username.as_deref().unwrap_or("");
            return Err(WorkerError::Config(format!(
                "authentication to {} failed (SASL {mechanism}, user `{user}`): check kafka.security: {reason}",
                settings.bootstrap_servers
            )));
        }
        if let Some(reason) = client.context().tls_failure() {
            if let Some(f) = TlsFailure::classify(&reason, &settings.security) {
                return Err(WorkerError::Config(
                    f.message(&settings.bootstrap_servers, &settings.security),
                ));
            }
        }
        match result {
            Ok(md) => return Ok(md.brokers().len()),
            Err(source) if std::time::Instant::now() >= deadline => {
                return Err(WorkerError::Unreachable {
                    bootstrap: settings.bootstrap_servers.clone(),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    source,
                })
            }
            Err(_) => {}
        }
    }
}
