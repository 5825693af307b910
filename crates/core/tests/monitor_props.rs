//! Property: the order partials arrive in does not change window metrics.

#![allow(clippy::unwrap_used)]

use driftwatch_core::join::partial::empty_partial;
use driftwatch_core::monitor::metrics::Metrics;
use driftwatch_core::monitor::{ModelWindows, Monitor, MonitorConfig, WindowSpec};
use driftwatch_core::{ConfusionCell, ModelPartial};
use proptest::prelude::*;

const MIN: i64 = 60_000;

fn arb_partial() -> impl Strategy<Value = (i64, i32, [u64; 4], u64, f64)> {
    (
        0i64..40,
        0i32..3,
        [0u64..50, 0u64..50, 0u64..50, 0u64..50],
        0u64..20,
        0.0f64..30.0,
    )
}

fn build(parts: &[(i64, i32, [u64; 4], u64, f64)]) -> Vec<ModelPartial> {
    parts
        .iter()
        .enumerate()
        .map(|(i, &(bucket, partition, cells, expired, loss))| {
            let mut p = empty_partial("m", "v", bucket * MIN, MIN, partition);
            p.sequence = i as u64;
            let names = [("a", "a"), ("a", "b"), ("b", "a"), ("b", "b")];
            p.confusion = names
                .iter()
                .zip(cells)
                .filter(|(_, n)| *n > 0)
                .map(|((pr, ac), n)| ConfusionCell {
                    predicted: (*pr).into(),
                    actual: (*ac).into(),
                    count: n,
                })
                .collect();
            let labeled: u64 = cells.iter().sum();
            p.counters.matched = labeled;
            p.counters.predictions = labeled + expired;
            p.counters.expired_unlabeled = expired;
            p.scored = labeled;
            p.log_loss_sum = loss;
            p.regression.count = expired;
            p.regression.squared_error_sum = loss * 2.0;
            p
        })
        .collect()
}

fn window_metrics(partials: &[ModelPartial]) -> Vec<(String, i64, i64, Metrics)> {
    let specs = vec![
        WindowSpec {
            name: "15m".into(),
            length_ms: 15 * MIN,
        },
        WindowSpec {
            name: "1h".into(),
            length_ms: 60 * MIN,
        },
    ];
    let mut w = ModelWindows::new(specs, 5 * MIN);
    for p in partials {
        w.ingest(p).unwrap();
        w.take_matured();
        w.evict(0);
    }
    w.windows()
        .into_iter()
        .map(|v| {
            let m = Metrics::compute(&v.aggregate, v.length_ms);
            (v.name, v.start, v.end, m)
        })
        .collect()
}

fn assert_same(a: &Metrics, b: &Metrics) {
    assert_eq!(a.predictions, b.predictions);
    assert_eq!(a.labeled, b.labeled);
    assert_eq!(a.accuracy, b.accuracy);
    assert_eq!(a.per_class, b.per_class);
    assert_eq!(a.label_coverage, b.label_coverage);
    // Floating sums are associative only up to rounding.
    for (x, y) in [(a.log_loss, b.log_loss), (a.rmse, b.rmse)] {
        match (x, y) {
            (Some(x), Some(y)) => assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0)),
            (x, y) => assert_eq!(x, y),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn window_metrics_do_not_depend_on_arrival_order(
        (parts, shuffled) in prop::collection::vec(arb_partial(), 1..60)
            .prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle()))
    ) {
        // All buckets lie within 40 min, inside the longest window: nothing is evicted, so every
        // order must give the same windows.
        let a = window_metrics(&build(&parts));
        // Shuffle the partials themselves, keeping each one's (partition, sequence) identity.
        let original = build(&parts);
        let mut reordered = Vec::with_capacity(original.len());
        let mut used = vec![false; original.len()];
        for s in &shuffled {
            let idx = (0..parts.len())
                .find(|&i| !used[i] && parts[i] == *s)
                .unwrap();
            used[idx] = true;
            reordered.push(original[idx].clone());
        }
        let b = window_metrics(&reordered);
        prop_assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            prop_assert_eq!((&x.0, x.1, x.2), (&y.0, y.1, y.2));
            assert_same(&x.3, &y.3);
        }

        // Through the façade as well (its accessor reads the same windows).
        let mut cfg = MonitorConfig::default();
        cfg.default.maturity_ms = 5 * MIN;
        let mut ma = Monitor::new(cfg.clone()).unwrap();
        let mut mb = Monitor::new(cfg).unwrap();
        for p in &original {
            ma.ingest(p).unwrap();
        }
        for p in &reordered {
            mb.ingest(p).unwrap();
        }
        let (sa, sb) = (ma.model_metrics("m", 0), mb.model_metrics("m", 0));
        prop_assert_eq!(sa.len(), sb.len());
        for (x, y) in sa.iter().zip(&sb) {
            prop_assert_eq!(
                (x.predictions, x.labeled, x.window_start, x.window_end),
                (y.predictions, y.labeled, y.window_start, y.window_end)
            );
        }
    }
}
