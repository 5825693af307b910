//! Which consumer-group protocol a stage's members speak (`kafka.group_protocol`).
//!
//! `auto` asks the cluster once, when a stage starts: a broker whose
//! `group.coordinator.rebalance.protocols` lists `consumer` (Kafka ≥ 4.0 by default) gets
//! KIP-848 members; an older broker, one that does not say, or one that cannot be asked (no
//! `DescribeConfigs` permission) gets classic members. Under either protocol the join's
//! co-partitioning holds because both use a `range` assignor (see docs/ARCHITECTURE.md,
//! "Rebalances"): the broker's `uniform` assignor would not keep partition *i* of both inputs
//! on one member, so the members ask for `range` by name.

use std::time::Duration;

use futures::executor::block_on;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use tracing::{info, warn};

use crate::clients::{apply_common, metadata_client};
use crate::settings::{GroupProtocol, KafkaSettings};

/// The broker setting that lists the group protocols a coordinator accepts.
const PROTOCOLS_CONFIG: &str = "group.coordinator.rebalance.protocols";

/// How long `auto` waits for the cluster's answer before falling back to `classic`.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);

/// The protocol in force: `consumer` or `classic`, never `auto`.
pub fn resolve(settings: &KafkaSettings) -> GroupProtocol {
    match settings.group_protocol {
        GroupProtocol::Auto => match offered(settings) {
            Ok(list) => {
                let protocol = protocol_of(&list);
                info!(
                    protocol = protocol.as_str(),
                    offered = %list,
                    "consumer group protocol chosen from the brokers' {PROTOCOLS_CONFIG}"
                );
                protocol
            }
            Err(reason) => {
                warn!(%reason, "cannot tell which group protocols the brokers offer: using classic");
                GroupProtocol::Classic
            }
        },
        fixed => {
            info!(
                protocol = fixed.as_str(),
                "consumer group protocol set by kafka.group_protocol"
            );
            fixed
        }
    }
}

/// Under `consumer`: sets `kafka.session_timeout` and `kafka.heartbeat_interval` on `group`
/// as its `consumer.session.timeout.ms` and `consumer.heartbeat.interval.ms` (KIP-848 makes
/// them the group's, not the client's; under `classic` they are client settings, see
/// [`crate::clients::member_config`]). Nothing when neither is set. The request replaces the
/// group's dynamic settings as a whole (rust-rdkafka has no incremental form). A failure
/// (no `AlterConfigs` permission on the group, an old broker) is logged: the brokers'
/// defaults then apply.
pub fn set_group_timeouts(settings: &KafkaSettings, group: &str, protocol: GroupProtocol) {
    let entries = group_timeouts(settings);
    if protocol != GroupProtocol::Consumer || entries.is_empty() {
        return;
    }
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-admin", settings.client_id));
    let admin = apply_common(&mut c, settings)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            c.create::<AdminClient<DefaultClientContext>>()
                .map_err(|e| e.to_string())
        });
    let set = admin.and_then(|admin| {
        let mut alter = AlterConfig::new(ResourceSpecifier::Group(group));
        for (k, v) in &entries {
            alter = alter.set(k, v);
        }
        let opts = AdminOptions::new().request_timeout(Some(ASK_TIMEOUT));
        let results = block_on(admin.alter_configs([&alter], &opts)).map_err(|e| e.to_string())?;
        match results.into_iter().next() {
            Some(Ok(_)) => Ok(()),
            Some(Err((_, e))) => Err(e.to_string()),
            None => Err("no answer".into()),
        }
    });
    match set {
        Ok(()) => info!(group, settings = ?entries, "group timeouts set"),
        Err(e) => warn!(group, error = %e, "group timeouts not set: the brokers' defaults apply"),
    }
}

/// The group settings `kafka.session_timeout` and `kafka.heartbeat_interval` make under
/// `consumer`.
fn group_timeouts(settings: &KafkaSettings) -> Vec<(&'static str, String)> {
    let ms = |d: Duration| d.as_millis().to_string();
    let mut out = Vec::new();
    if let Some(d) = settings.session_timeout {
        out.push(("consumer.session.timeout.ms", ms(d)));
    }
    if let Some(d) = settings.heartbeat_interval {
        out.push(("consumer.heartbeat.interval.ms", ms(d)));
    }
    out
}

/// `consumer` when `list` (comma-separated) names it.
fn protocol_of(list: &str) -> GroupProtocol {
    if list.split(',').any(|p| p.trim() == "consumer") {
        GroupProtocol::Consumer
    } else {
        GroupProtocol::Classic
    }
}

/// The value of [`PROTOCOLS_CONFIG`] on one broker of the cluster (empty when the broker
/// does not know the setting: too old for KIP-848).
fn offered(settings: &KafkaSettings) -> Result<String, String> {
    let meta = metadata_client(settings).map_err(|e| e.to_string())?;
    let md = meta
        .fetch_metadata(None, ASK_TIMEOUT)
        .map_err(|e| format!("metadata: {e}"))?;
    let broker = md
        .brokers()
        .first()
        .map(|b| b.id())
        .ok_or("the cluster listed no broker")?;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set("client.id", format!("{}-admin", settings.client_id));
    apply_common(&mut c, settings).map_err(|e| e.to_string())?;
    let admin: AdminClient<DefaultClientContext> = c.create().map_err(|e| e.to_string())?;
    let opts = AdminOptions::new().request_timeout(Some(ASK_TIMEOUT));
    let results = block_on(admin.describe_configs(&[ResourceSpecifier::Broker(broker)], &opts))
        .map_err(|e| format!("describe broker {broker}: {e}"))?;
    let resource = results
        .into_iter()
        .next()
        .ok_or("no answer")?
        .map_err(|e| format!("describe broker {broker}: {e}"))?;
    Ok(resource
        .get(PROTOCOLS_CONFIG)
        .and_then(|entry| entry.value.clone())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_only_when_listed() {
        assert_eq!(protocol_of("classic,consumer"), GroupProtocol::Consumer);
        assert_eq!(
            protocol_of("classic, consumer ,streams"),
            GroupProtocol::Consumer
        );
        assert_eq!(protocol_of("classic"), GroupProtocol::Classic);
        assert_eq!(protocol_of(""), GroupProtocol::Classic);
        assert_eq!(protocol_of("consumers"), GroupProtocol::Classic);
    }

    #[test]
    fn timeouts_become_the_groups_settings_in_milliseconds() {
        let mut s = KafkaSettings::default();
        assert!(group_timeouts(&s).is_empty());
        s.session_timeout = Some(Duration::from_secs(8));
        s.heartbeat_interval = Some(Duration::from_millis(1500));
        assert_eq!(
            group_timeouts(&s),
            vec![
                ("consumer.session.timeout.ms", "8000".to_string()),
                ("consumer.heartbeat.interval.ms", "1500".to_string()),
            ]
        );
    }

    #[test]
    fn a_fixed_protocol_is_not_asked_for() {
        let s = KafkaSettings {
            // Nothing listens here: asking would fail and fall back to classic.
            bootstrap_servers: "127.0.0.1:1".into(),
            group_protocol: GroupProtocol::Consumer,
            ..KafkaSettings::default()
        };
        assert_eq!(resolve(&s), GroupProtocol::Consumer);
    }
}
