//! What librdkafka may buffer in a join worker, sized from `join.state.memory_budget`.
//!
//! # Why
//! librdkafka's own defaults hold far more than a join needs: a consumer pre-fetches up to
//! `queued.min.messages` (100 000) records or `queued.max.messages.kbytes` (64 MiB), in
//! responses of up to `fetch.max.bytes` (50 MiB on the wire), and the transactional producer
//! was given 2 M records / 1 GiB of queue. Under overload every input partition has a backlog,
//! so the pre-fetch fills: a worker with a 256 MiB budget reached 1.7–1.9 GiB, of which a heap
//! profile showed 2.5 M queued fetched records (`rd_kafka_op_t`, 108 B each: 275 MB) and their
//! decompressed batches (158 MB) (BENCHMARKS.md, *Overload*). The join needs none of it: its
//! own queue per task already holds `join.max_queued_records` records per input, and pauses
//! the partition beyond that.
//!
//! # The derivation
//! With `B` = `join.state.memory_budget` (256 MiB by default, used for sizing even without
//! `join.state.dir`), the clients' buffers get `F = clamp(B / 4, 4 MiB, 128 MiB)`:
//! - the consumer's queue, half of `F`. A high-level consumer forwards every partition's
//!   fetch queue to its one consumer queue, and librdkafka compares both limits with that
//!   queue, whatever the partition count (its CONFIGURATION.md says so of
//!   `queued.max.messages.kbytes`; `queued.min.messages` is checked the same way): so
//!   `queued.max.messages.kbytes = F / 4` for the records' bytes and `queued.min.messages =
//!   F / 4 / 128 B` for librdkafka's op per record. A limit divided among partitions, as this
//!   module first did, throttled the fetches of every partition to one a second
//!   (`fetch.queue.backoff.ms`) as soon as the queue held a few MiB;
//! - one response, the other half: librdkafka checks the queue limits before a fetch, so one
//!   response comes on top. On the wire it is at most `fetch.max.bytes = F / 2 / 8`: a record
//!   of the inputs takes about 8 times its compressed size once fetched (its op, and its part
//!   of the decompressed batch: 433 MB for 50 MiB of lz4 responses in the profile above).
//!   librdkafka refuses a `fetch.max.bytes` below `message.max.bytes` (1 000 000 by
//!   default), so it is at least that: 1 MiB, above the half of `F` for budgets below 64 MiB.
//!   `max.partition.fetch.bytes` is the response divided among the input partitions `n` (at
//!   least 64 KiB), so every partition fits in each response and none waits behind the others;
//! - `fetch.queue.backoff.ms = 20`: how soon a fetch is tried again once the queue was full
//!   (librdkafka's 1 s default idles the join when the queue is this small);
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

/// Least `fetch.max.bytes`: librdkafka's default `message.max.bytes` (1 000 000), rounded up.
const MIN_FETCH: u64 = MIB;
/// Least `max.partition.fetch.bytes`: below this a fetch would bring too few records to keep
/// the loop busy.
const MIN_PARTITION_FETCH: u64 = 64 * KIB;
/// librdkafka's memory per queued fetched record besides its bytes (`rd_kafka_op_t`, 108 B
/// measured, rounded up).
const OP_BYTES: u64 = 128;
/// Memory a fetched input record takes per byte it had on the wire (lz4): see the module docs.
const FETCH_EXPANSION: u64 = 8;
/// `fetch.queue.backoff.ms`.
const QUEUE_BACKOFF_MS: u64 = 20;
/// librdkafka's memory per record queued in a producer, with its delivery future.
const PRODUCED_RECORD_BYTES: u64 = 256;

/// The clients' buffer limits of a join worker. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientMemory {
    /// `F`: what the consumer (queue and one response), and separately the producer's queue,
    /// may hold.
    pub share_bytes: u64,
    pub queued_min_messages: u64,
    pub queued_max_messages_kbytes: u64,
    pub fetch_max_bytes: u64,
    pub max_partition_fetch_bytes: u64,
    pub queue_buffering_max_messages: u64,
    pub queue_buffering_max_kbytes: u64,
}

impl ClientMemory {
    /// The limits for a worker with `budget_bytes` of `join.state.memory_budget` that may hold
    /// up to `input_partitions` input partitions (all inputs together), its clients configured
    /// by `kafka` (a `message.max.bytes` there raises the least `fetch.max.bytes`).
    pub fn for_worker(budget_bytes: u64, input_partitions: usize, kafka: &KafkaSettings) -> Self {
        let message_max_bytes = kafka
            .properties
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(MIN_FETCH);
        Self::for_budget_and_message_size(budget_bytes, input_partitions, message_max_bytes)
    }

    /// The limits for a consumer whose `message.max.bytes` is `message_max_bytes`: librdkafka
    /// requires `fetch.max.bytes` to be at least that.
    fn for_budget_and_message_size(
        budget_bytes: u64,
        input_partitions: usize,
        message_max_bytes: u64,
    ) -> Self {
        let share = (budget_bytes / 4).clamp(4 * MIB, 128 * MIB);
        let n = u64::try_from(input_partitions.max(1)).unwrap_or(u64::MAX);
        let fetch_max_bytes = (share / 2 / FETCH_EXPANSION)
            .max(MIN_FETCH)
            .max(message_max_bytes);
        ClientMemory {
            share_bytes: share,
            queued_min_messages: share / 4 / OP_BYTES,
            queued_max_messages_kbytes: share / 4 / KIB,
            fetch_max_bytes,
            max_partition_fetch_bytes: (fetch_max_bytes / n).max(MIN_PARTITION_FETCH),
            queue_buffering_max_messages: (share / PRODUCED_RECORD_BYTES).max(10_000),
            queue_buffering_max_kbytes: share / KIB,
        }
    }

    /// Sets the consumer's pre-fetch and fetch limits on `c`, then the pass-through
    /// properties again (they still win).
    pub fn apply_to_consumer(&self, c: &mut ClientConfig, settings: &KafkaSettings) {
        c.set("queued.min.messages", self.queued_min_messages.to_string())
            .set(
                "queued.max.messages.kbytes",
                self.queued_max_messages_kbytes.to_string(),
            )
            .set("fetch.max.bytes", self.fetch_max_bytes.to_string())
            .set(
                "max.partition.fetch.bytes",
                self.max_partition_fetch_bytes.to_string(),
            )
            .set("fetch.queue.backoff.ms", QUEUE_BACKOFF_MS.to_string());
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

    impl ClientMemory {
        /// With librdkafka's default `message.max.bytes`.
        fn for_budget(budget_bytes: u64, input_partitions: usize) -> Self {
            Self::for_worker(budget_bytes, input_partitions, &KafkaSettings::default())
        }
    }

    #[test]
    fn the_default_budget_gives_a_quarter_to_the_consumer_and_its_queue_is_shared() {
        let m = ClientMemory::for_budget(256 * MIB, 16);
        assert_eq!(m.share_bytes, 64 * MIB);
        // One queue for all partitions: 16 MiB of records' bytes and 128-byte ops.
        assert_eq!(m.queued_max_messages_kbytes, 16 * 1024);
        assert_eq!(m.queued_min_messages, 16 * MIB / 128);
        // One response of 4 MiB on the wire (about 32 MiB fetched), 256 KiB a partition.
        assert_eq!(m.fetch_max_bytes, 4 * MIB);
        assert_eq!(m.max_partition_fetch_bytes, 256 * KIB);
        assert_eq!(m.queue_buffering_max_kbytes, 64 * 1024);
        assert_eq!(m.queue_buffering_max_messages, 64 * MIB / 256);
    }

    #[test]
    fn the_consumer_stays_within_its_share_whatever_the_partition_count() {
        for budget in [MIB, 4 * MIB, 64 * MIB, 256 * MIB, 4096 * MIB] {
            for n in [1, 8, 16, 64, 1024] {
                let m = ClientMemory::for_budget(budget, n);
                let queue = m.queued_max_messages_kbytes * KIB + m.queued_min_messages * OP_BYTES;
                let response = m.fetch_max_bytes * FETCH_EXPANSION;
                // Below 64 MiB the response is librdkafka's least, 1 MiB on the wire.
                let slack = if budget < 64 * MIB {
                    MIN_FETCH * FETCH_EXPANSION
                } else {
                    0
                };
                assert!(
                    queue + response <= m.share_bytes + slack,
                    "budget {budget} n {n}: {m:?}"
                );
                // Every partition fits in one response, down to the floor.
                assert!(
                    m.max_partition_fetch_bytes * n as u64 <= m.fetch_max_bytes
                        || m.max_partition_fetch_bytes == MIN_PARTITION_FETCH,
                    "budget {budget} n {n}: {m:?}"
                );
            }
        }
    }

    #[test]
    fn a_large_budget_does_not_raise_the_limits_past_the_cap() {
        let m = ClientMemory::for_budget(64 * 1024 * MIB, 2);
        assert_eq!(m.share_bytes, 128 * MIB);
        assert_eq!(m.fetch_max_bytes, 8 * MIB);
        assert!(m.queued_min_messages <= 100_000 * 3);
    }

    #[test]
    fn a_response_is_never_below_the_largest_message() {
        assert_eq!(ClientMemory::for_budget(MIB, 16).fetch_max_bytes, MIB);
        let mut kafka = KafkaSettings::default();
        kafka
            .properties
            .insert("message.max.bytes".into(), (10 * MIB).to_string());
        let m = ClientMemory::for_worker(256 * MIB, 16, &kafka);
        assert_eq!(m.fetch_max_bytes, 10 * MIB);
    }

    #[test]
    fn pass_through_properties_still_win() {
        let mut settings = KafkaSettings::default();
        settings
            .properties
            .insert("queued.min.messages".into(), "7".into());
        settings
            .properties
            .insert("fetch.max.bytes".into(), "52428800".into());
        settings
            .properties
            .insert("queue.buffering.max.messages".into(), "9".into());
        let m = ClientMemory::for_budget(256 * MIB, 16);
        let mut c = ClientConfig::new();
        m.apply_to_consumer(&mut c, &settings);
        assert_eq!(c.get("queued.min.messages"), Some("7"));
        assert_eq!(c.get("fetch.max.bytes"), Some("52428800"));
        assert_eq!(c.get("queued.max.messages.kbytes"), Some("16384"));
        assert_eq!(c.get("max.partition.fetch.bytes"), Some("262144"));
        let mut p = ClientConfig::new();
        m.apply_to_producer(&mut p, &settings);
        assert_eq!(p.get("queue.buffering.max.messages"), Some("9"));
        assert_eq!(p.get("queue.buffering.max.kbytes"), Some("65536"));
    }
}
