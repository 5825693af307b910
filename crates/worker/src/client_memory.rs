//! What librdkafka may buffer in a join worker, sized from `join.state.memory_budget`.
//!
//! # Why
//! librdkafka's own defaults hold far more than a join needs: a consumer pre-fetches up to
//! `queued.min.messages` (100 000) records or `queued.max.messages.kbytes` (64 MiB) per
//! partition, and the transactional producer was given 2 M records / 1 GiB of queue. Under
//! overload every input partition has a backlog, so the pre-fetch fills: a worker with a
//! 256 MiB budget reached 1.7–1.9 GiB, of which a heap profile of its consumer's broker thread
//! showed 2.5 M queued fetched records (`rd_kafka_op_t`, 108 B each: 275 MB) and their
//! decompressed batches (158 MB) in 48 s of the overload (BENCHMARKS.md, *Overload*). The join
//! needs none of it: its own queue per task already holds `join.max_queued_records` records
//! per input, and pauses the partition beyond that.
//!
//! # The derivation
//! With `B` = `join.state.memory_budget` (256 MiB by default, used for sizing even without
//! `join.state.dir`), the clients' buffers get `F = clamp(B / 4, 4 MiB, 128 MiB)`:
//! - the consumer, per input partition (`n` = input topics × their partition count, the most
//!   one worker can hold): `f = max(F / n, 256 KiB)`, spent half on the records' bytes
//!   (`queued.max.messages.kbytes = f / 2`) and half on librdkafka's per-record op
//!   (`queued.min.messages = f / 2 / 128 B`). The fetch sizes stay as they were
//!   (`max.partition.fetch.bytes` 4 MiB, librdkafka's `fetch.max.bytes` 50 MiB): measured,
//!   responses of 8 MiB (512 KiB a partition) nearly halved the peak under overload (568 vs
//!   975 MiB) but let the labels input, whose records are smaller, run 1.1 M records ahead of
//!   the predictions, which then caught up against labels spilled to disk: 107 s instead of
//!   9 s (BENCHMARKS.md, *Overload*). Set them in `kafka.properties` where memory matters
//!   more than catch-up time. librdkafka checks the queue limits only before a fetch, so one
//!   response (up to 50 MiB on the wire, several times that in memory) comes on top;
//! - the transactional producer's queue: `queue.buffering.max.kbytes = F` and
//!   `queue.buffering.max.messages = F / 256 B` (a queued record is a librdkafka message of
//!   about 200 B with its delivery future, plus its key and value). A commit whose records do
//!   not fit waits for the queue to drain (it sends no faster either way).
//!
//! `kafka.properties` are applied after these, so an operator can still set any of them.

use rdkafka::config::ClientConfig;

use crate::settings::KafkaSettings;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Least bytes per input partition: below this a fetch would bring too few records to keep
/// the loop busy.
const MIN_PER_PARTITION: u64 = 256 * KIB;
/// librdkafka's memory per queued fetched record besides its bytes (`rd_kafka_op_t`, 108 B
/// measured, rounded up).
const OP_BYTES: u64 = 128;
/// librdkafka's memory per record queued in a producer, with its delivery future.
const PRODUCED_RECORD_BYTES: u64 = 256;

/// The clients' buffer limits of a join worker. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMemory {
    /// `F`: what the consumer's pre-fetch, and separately the producer's queue, may hold.
    pub share_bytes: u64,
    pub queued_min_messages: u64,
    pub queued_max_messages_kbytes: u64,
    pub queue_buffering_max_messages: u64,
    pub queue_buffering_max_kbytes: u64,
}

impl ClientMemory {
    /// The limits for a worker with `budget_bytes` of `join.state.memory_budget` that may hold
    /// up to `input_partitions` input partitions (all inputs together).
    pub fn for_budget(budget_bytes: u64, input_partitions: usize) -> Self {
        let share = (budget_bytes / 4).clamp(4 * MIB, 128 * MIB);
        let n = u64::try_from(input_partitions.max(1)).unwrap_or(u64::MAX);
        let per_partition = (share / n).max(MIN_PER_PARTITION);
        ClientMemory {
            share_bytes: share,
            queued_min_messages: (per_partition / 2 / OP_BYTES).max(1_000),
            queued_max_messages_kbytes: per_partition / 2 / KIB,
            queue_buffering_max_messages: (share / PRODUCED_RECORD_BYTES).max(10_000),
            queue_buffering_max_kbytes: share / KIB,
        }
    }

    /// Sets the consumer's pre-fetch limits on `c`, then the pass-through properties again
    /// (they still win).
    pub fn apply_to_consumer(&self, c: &mut ClientConfig, settings: &KafkaSettings) {
        c.set("queued.min.messages", self.queued_min_messages.to_string())
            .set(
                "queued.max.messages.kbytes",
                self.queued_max_messages_kbytes.to_string(),
            );
        reapply(c, settings);
    }

    /// Sets the producer's queue limits on `c`, then the pass-through properties again.
    pub fn apply_to_producer(&self, c: &mut ClientConfig, settings: &KafkaSettings) {
        c.set(
            "queue.buffering.max.messages",
            self.queue_buffering_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            self.queue_buffering_max_kbytes.to_string(),
        );
        reapply(c, settings);
    }
}

fn reapply(c: &mut ClientConfig, settings: &KafkaSettings) {
    for (k, v) in &settings.properties {
        c.set(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_gives_a_quarter_to_the_prefetch_of_sixteen_partitions() {
        let m = ClientMemory::for_budget(256 * MIB, 16);
        assert_eq!(m.share_bytes, 64 * MIB);
        // 4 MiB per partition: half for the records' bytes, half for 128-byte ops.
        assert_eq!(m.queued_max_messages_kbytes, 2 * 1024);
        assert_eq!(m.queued_min_messages, 2 * MIB / 128);
        assert_eq!(m.queue_buffering_max_kbytes, 64 * 1024);
        assert_eq!(m.queue_buffering_max_messages, 64 * MIB / 256);
    }

    #[test]
    fn the_prefetch_stays_within_its_share_whatever_the_partition_count() {
        for budget in [4 * MIB, 64 * MIB, 256 * MIB, 4096 * MIB] {
            for n in [1, 8, 16, 64] {
                let m = ClientMemory::for_budget(budget, n);
                let per_partition =
                    m.queued_max_messages_kbytes * KIB + m.queued_min_messages * OP_BYTES;
                let floor = MIN_PER_PARTITION + 1_000 * OP_BYTES;
                assert!(
                    per_partition * n as u64 <= m.share_bytes.max(floor * n as u64),
                    "budget {budget} n {n}: {m:?}"
                );
            }
        }
    }

    #[test]
    fn a_large_budget_does_not_raise_the_limits_past_the_cap() {
        let m = ClientMemory::for_budget(64 * 1024 * MIB, 2);
        assert_eq!(m.share_bytes, 128 * MIB);
        assert!(m.queued_min_messages <= 100_000 * 3);
    }

    #[test]
    fn pass_through_properties_still_win() {
        let mut settings = KafkaSettings::default();
        settings
            .properties
            .insert("queued.min.messages".into(), "7".into());
        settings
            .properties
            .insert("queue.buffering.max.messages".into(), "9".into());
        let m = ClientMemory::for_budget(256 * MIB, 16);
        let mut c = ClientConfig::new();
        m.apply_to_consumer(&mut c, &settings);
        assert_eq!(c.get("queued.min.messages"), Some("7"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("2048"));
        let mut p = ClientConfig::new();
        m.apply_to_producer(&mut p, &settings);
        assert_eq!(p.get("queue.buffering.max.messages"), Some("9"));
        assert_eq!(p.get("queue.buffering.max.kbytes"), Some("65536"));
    }
}
