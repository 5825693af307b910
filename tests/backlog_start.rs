//! A worker started on a finished backlog: every prediction, then every label, is on the topics
//! before the join and monitor stages start (`driftwatch run --role all`). Reading it takes
//! many small fetches per partition, and the idle fallback (`join.idle_timeout` 3 s) must not
//! move a task's watermark before both of its inputs are read to their end: the committed
//! partials must equal the offline reference exactly, run after run.

use std::time::Duration;

use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{produce_records, Scenario, Side};
use driftwatch_tests::stages::{scenario_settings, Stages};

const PARTITIONS: i32 = 4;
const PREDICTIONS: usize = 8_000;

/// Per run: `join.max_queued_records`, `max.partition.fetch.bytes`. The smaller queues pause an
/// input after a few hundred records, while the other may still be unread: the task must wait
/// for it, not go on.
const RUNS: [(usize, &str); 3] = [(50_000, "8192"), (300, "8192"), (300, "2048")];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_read_from_the_start_with_small_fetches_is_accounted_exactly() {
    for (run, (max_queued, fetch_bytes)) in (0..).zip(RUNS) {
        let mut s = scenario_settings(PARTITIONS).await;
        s.join.max_queued_records = max_queued;
        // Event times two hours back: once both inputs are read, the fallback moves every
        // task's watermark to the present and everything still pending resolves.
        let start = driftwatch_tests::now_ms() - 2 * 3_600_000;
        let scenario = Scenario::generate(100 + run, PREDICTIONS, start);
        let side = |side: Side| scenario.records.iter().filter(move |r| r.side == side);
        produce_records(&s, side(Side::Predictions)).await;
        produce_records(&s, side(Side::Labels)).await;
        // Small fetches (the producer above kept the defaults): each partition is read in
        // dozens of rounds, one input often ahead of the other.
        s.kafka
            .properties
            .insert("max.partition.fetch.bytes".into(), fetch_bytes.into());
        let stages = Stages::start(&s);
        stages
            .wait_for_inputs(scenario.inputs(), Duration::from_secs(120))
            .await;
        let reference = Outcomes::reference(&scenario);
        let mut reader = PartialsReader::new(&s, PARTITIONS);
        reader.read_until(reference.total(), Duration::from_secs(60));
        stages.stop().await;
        println!("run {run}: {} outcomes as the reference", reference.total());
        assert_reference(&reader.seen, &reference, &[]);
    }
}
