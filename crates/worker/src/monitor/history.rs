//! What a monitor worker reads besides its partials: the retrain history (replayed into the
//! retrain policies at start-up, so cooldowns and daily budgets hold across restarts and
//! hand-overs) and the reference profiles of the `model-references` topic (followed for the
//! whole run).

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_codec::{from_avro, PayloadFormat};
use driftwatch_core::monitor::PolicyState;
use driftwatch_core::{ModelReference, RetrainEvent};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{info, warn};

use super::lock;
use super::stage::Monitoring;
use crate::changelog::ChangelogReader;
use crate::clients::consumer_config;
use crate::error::Result;
use crate::settings::Settings;

impl Monitoring {
    /// Replays every retrain event this deployment published into the policies (exactly-once:
    /// a model's snapshot, restored on assignment, carries its policy too). Runs after the
    /// producer's `init_transactions`, which aborts at once a transaction a killed predecessor
    /// under the same transactional id left open, instead of waiting for it to time out.
    pub(super) fn replay_retrain_history(&mut self) -> Result<()> {
        let history = read_retrain_history(&self.settings)?;
        let mut by_model: BTreeMap<&str, Vec<&RetrainEvent>> = BTreeMap::new();
        for e in &history {
            by_model.entry(e.model_id.as_str()).or_default().push(e);
        }
        let mut restored = Vec::new();
        for (model, events) in by_model {
            self.monitor
                .restore_policy_state(model, PolicyState::replay(events));
            restored.push(model.to_string());
        }
        if !history.is_empty() {
            info!(
                events = history.len(),
                models = restored.len(),
                "retrain history replayed"
            );
        }
        lock(&self.stats).restored_policies = restored;
        Ok(())
    }

    /// Loads the reference profiles that arrived since the last call.
    pub(super) fn take_references(&mut self) {
        let Some(references) = &mut self.references else {
            return;
        };
        while let Ok(r) = references.try_recv() {
            match self.monitor.set_reference_signature(
                &r.model_id,
                &r.model_version,
                &r.signature,
                r.created_at,
                r.created_at,
            ) {
                Ok(()) => {
                    info!(model = %r.model_id, version = %r.model_version, rows = r.rows, source = %r.source, "reference profile loaded");
                    lock(&self.stats).references.push(r.key());
                }
                Err(e) => warn!(error = %e, model = %r.model_id, "reference profile not usable"),
            }
        }
    }
}

/// Reads every reference profile of the `model-references` topic from its start and then
/// follows it, forwarding each one. Every monitor worker reads all of them (the topic is small
/// and compacted), so a model finds its reference whichever worker owns it. `None` when the
/// topic does not exist: live traffic then serves as the reference.
pub(super) fn follow_references(
    settings: &Settings,
    tx: tokio::sync::mpsc::UnboundedSender<ModelReference>,
) -> Option<tokio::task::JoinHandle<()>> {
    let topic = settings.topics.model_references.clone();
    // Assigned, not subscribed: no group membership, nothing committed.
    let consumer: StreamConsumer = match consumer_config(
        &settings.kafka,
        &format!("{}-references", settings.monitor.group_id),
    )
    .create()
    {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "reference reader not created");
            return None;
        }
    };
    let partitions = match consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)) {
        Ok(md) => md
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .unwrap_or(0),
        Err(_) => 0,
    };
    if partitions == 0 {
        info!(%topic, "no reference topic: the first traffic of each version is its reference");
        return None;
    }
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        if let Err(e) = tpl.add_partition_offset(&topic, p as i32, Offset::Beginning) {
            warn!(error = %e, "reference partition");
        }
    }
    if let Err(e) = consumer.assign(&tpl) {
        warn!(error = %e, "reference topic not assigned");
        return None;
    }
    Some(tokio::spawn(async move {
        while !tx.is_closed() {
            match consumer.recv().await {
                Ok(m) => match m.payload().map(from_avro::<ModelReference>) {
                    Some(Ok(r)) => {
                        // The stage is gone once the channel closes; the loop ends below.
                        let _ = tx.send(r);
                    }
                    Some(Err(e)) => {
                        warn!(error = %e, offset = m.offset(), "undecodable reference skipped")
                    }
                    None => {} // a tombstone: the reference was deleted
                },
                Err(e) => warn!(error = %e, "reference reader"),
            }
        }
    }))
}

/// Every retrain event on the retrain-events topic, read from the start to its end as of now
/// (Avro or JSON, whichever the deployment writes), the way a changelog is restored: an
/// aborted transaction's events (a worker killed mid-evaluation) are skipped, and an open one
/// is waited out rather than mistaken for the end.
fn read_retrain_history(settings: &Settings) -> Result<Vec<RetrainEvent>> {
    let topic = &settings.topics.retrain_events;
    let reader = ChangelogReader::of(
        settings,
        topic.clone(),
        &format!("{}-history", settings.monitor.group_id),
    )?;
    let partitions = crate::topics::partition_count(
        reader.client(),
        &settings.kafka.bootstrap_servers,
        topic,
        Duration::from_secs(10),
    )?;
    let partitions: Vec<i32> = (0..partitions)
        .filter_map(|p| i32::try_from(p).ok())
        .collect();
    let mut events = Vec::new();
    reader.read_partitions(&partitions, Duration::from_secs(120), |m| {
        let decoded = match m.payload() {
            Some(p) if PayloadFormat::detect(p) == PayloadFormat::Json => {
                driftwatch_codec::from_json_slice::<RetrainEvent>(p).ok()
            }
            Some(p) => from_avro::<RetrainEvent>(p).ok(),
            None => None,
        };
        match decoded {
            Some(e) => events.push(e),
            None => warn!(offset = m.offset(), "undecodable retrain event skipped"),
        }
        Ok(())
    })?;
    Ok(events)
}
