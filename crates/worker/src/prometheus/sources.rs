//! The sources stage's series: per source, records read, how each half ended, halves waiting
//! and predictions written. Source names come from the configuration, not from the data, so
//! their cardinality is the operator's.
//!
//! Every record read is one half and ends in one outcome or still waits:
//! `records = paired + unmapped + expired + duplicate + dead_lettered + pending`, where
//! `paired` and `unmapped` count halves (two per pair).

use std::collections::BTreeMap;

use prometheus_client::registry::Registry;

use super::{counter_family, gauge_family, MetricName};
use crate::sources::SourceCounts;

/// Reads one outcome's halves of a source's counts.
pub type SourceReader = fn(&SourceCounts) -> u64;

/// Values of `outcome` in `driftwatch_source_halves_total`, with what each one reads.
pub const SOURCE_OUTCOMES: [(&str, SourceReader); 5] = [
    ("paired", |c| 2 * c.counters.mapped_pairs),
    ("unmapped", |c| 2 * c.counters.unmapped_pairs),
    ("expired", |c| c.counters.pairing.expired),
    ("duplicate", |c| c.counters.pairing.duplicates),
    ("dead_lettered", |c| c.counters.pairing.dead_lettered),
];

pub(super) fn register(registry: &mut Registry, sources: &BTreeMap<String, SourceCounts>) {
    let records = counter_family(registry, MetricName::SourceRecords);
    let halves = counter_family(registry, MetricName::SourceHalves);
    let pending = gauge_family(registry, MetricName::SourcePendingHalves);
    let predictions = counter_family(registry, MetricName::SourcePredictions);
    for (name, c) in sources {
        let labels = vec![("source", name.clone())];
        records
            .get_or_create(&labels)
            .inc_by(c.counters.pairing.halves_in);
        pending.get_or_create(&labels).set(c.pending as f64);
        predictions
            .get_or_create(&labels)
            .inc_by(c.counters.predictions);
        for (outcome, read) in SOURCE_OUTCOMES {
            let labels = vec![("source", name.clone()), ("outcome", outcome.to_string())];
            halves.get_or_create(&labels).inc_by(read(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prometheus::{render, RenderOptions, WorkerStatus};

    #[test]
    fn source_series_add_up_to_the_records_read() {
        let mut c = SourceCounts::default();
        c.counters.pairing.halves_in = 10;
        c.counters.pairing.paired = 3;
        c.counters.mapped_pairs = 2;
        c.counters.unmapped_pairs = 1;
        c.counters.pairing.expired = 1;
        c.counters.pairing.dead_lettered = 2;
        c.counters.predictions = 2;
        c.pending = 1;
        let outcomes: u64 = SOURCE_OUTCOMES.iter().map(|(_, r)| r(&c)).sum();
        assert_eq!(outcomes + c.pending, c.counters.pairing.halves_in);
        let mut w = WorkerStatus::default();
        w.sources.insert("iris".into(), c);
        let text = render(&w, &RenderOptions::default()).unwrap();
        for line in [
            "driftwatch_source_records_total{source=\"iris\"} 10",
            "driftwatch_source_halves_total{source=\"iris\",outcome=\"paired\"} 4",
            "driftwatch_source_halves_total{source=\"iris\",outcome=\"unmapped\"} 2",
            "driftwatch_source_pending_halves{source=\"iris\"} 1",
            "driftwatch_source_predictions_total{source=\"iris\"} 2",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
