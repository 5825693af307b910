//! A look at live traffic for `driftwatch check-config`: the most recent records of each
//! partition of an input topic, checked against their key's murmur2 partition
//! ([`driftwatch_core::join::routing`]) — the same check the join stage applies to every
//! record it reads. A producer on another partitioner shows before the join starves.
//!
//! The sampler assigns the partitions itself (no group membership, nothing committed) from
//! `high watermark − per_partition` and reads each up to its end (`enable.partition.eof`, so
//! transaction markers at the end do not keep it waiting).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use driftwatch_core::join::routing::check;
use driftwatch_core::join::RoutingTally;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::clients::apply_common;
use crate::error::Result;
use crate::settings::KafkaSettings;

/// Checks up to `per_partition` of the latest records of each of `partitions` partitions of
/// `topic`; reads for at most `timeout`. Returns what it could read by then.
pub fn sample_routing(
    settings: &KafkaSettings,
    topic: &str,
    partitions: usize,
    per_partition: i64,
    timeout: Duration,
) -> Result<RoutingTally> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &settings.bootstrap_servers)
        .set(
            "client.id",
            format!("{}-routing-sample", settings.client_id),
        )
        // Required by the consumer API; the sampler never joins it nor commits.
        .set("group.id", format!("{}-routing-sample", settings.client_id))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed");
    apply_common(&mut c, settings)?;
    let consumer: BaseConsumer = c.create()?;
    let n = i32::try_from(partitions).unwrap_or(i32::MAX);
    let mut tpl = TopicPartitionList::new();
    let mut open = HashSet::new();
    for p in 0..n {
        let (low, high) = consumer.fetch_watermarks(topic, p, timeout)?;
        let start = low.max(high - per_partition.max(1));
        if start < high {
            tpl.add_partition_offset(topic, p, Offset::Offset(start))?;
            open.insert(p);
        }
    }
    let mut tally = RoutingTally::default();
    if open.is_empty() {
        return Ok(tally);
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    while !open.is_empty() && Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => tally.add(check(m.key(), m.partition(), n)),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(tally)
}
