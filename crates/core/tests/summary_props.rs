//! Property tests of the summaries: merge is associative and commutative with `Default` as
//! identity, and summarizing the parts of a stream split anywhere, then merging them in any
//! grouping and order, equals summarizing the whole — exactly for counts, min, max and
//! missing; bit for bit for the numeric distinct-value sample (what the codec writes, so its
//! bytes are equal too); within 1e-9 (relative) for mean and variance (Chan's merge rounds
//! differently per grouping); exactly for frequent items below the sketch's capacity.
//! Decoding arbitrary or corrupted bytes returns an error and never panics.
#![allow(clippy::unwrap_used)]

use driftwatch_core::summary::{
    CategoricalSummary, FeatureInterner, NumericSummary, SignatureSummary, SAMPLE_K,
};
use driftwatch_core::{FeatureValue, Prediction};
use proptest::prelude::*;

fn numeric(xs: &[f64]) -> NumericSummary {
    let mut s = NumericSummary::new();
    for &x in xs {
        s.update(x);
    }
    s
}

fn categorical(xs: &[Option<u8>]) -> CategoricalSummary {
    let mut s = CategoricalSummary::new();
    for x in xs {
        match x {
            Some(v) => s.update(&format!("v{v}")),
            None => s.update_missing(),
        }
    }
    s
}

fn rel_close(a: Option<f64>, b: Option<f64>, scale: f64) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(scale),
        _ => false,
    }
}

/// The canonical sample, bit for bit: (hash, value bits, count) per kept value.
fn sample_bits(s: &NumericSummary) -> Vec<(u64, u64, u64)> {
    s.sample()
        .entries()
        .iter()
        .map(|e| (e.hash, e.value.to_bits(), e.count))
        .collect()
}

/// Exact moments and extremes agree, the samples are identical bit for bit; every decile of
/// `s` has a true rank (in `finite`) within the sample's DKW bound of its nominal rank.
fn assert_numeric_equiv(s: &NumericSummary, whole: &NumericSummary, finite: &[f64]) {
    assert_eq!(s.count(), whole.count());
    assert_eq!(s.missing(), whole.missing());
    assert_eq!(s.min(), whole.min());
    assert_eq!(s.max(), whole.max());
    assert_eq!(sample_bits(s), sample_bits(whole));
    let scale = whole
        .max()
        .map_or(1.0, |m| m.abs().max(whole.min().unwrap().abs()).max(1.0));
    assert!(
        rel_close(s.mean(), whole.mean(), scale),
        "{:?} {:?}",
        s.mean(),
        whole.mean()
    );
    assert!(
        rel_close(s.variance(), whole.variance(), scale * scale),
        "{:?} {:?}",
        s.variance(),
        whole.variance()
    );
    if finite.is_empty() {
        assert!(s.quantile(0.5).is_none());
        return;
    }
    let n = finite.len() as f64;
    for i in 1..10 {
        let rank = f64::from(i) / 10.0;
        let q = s.quantile(rank).unwrap();
        // The rank interval q occupies in the true data (ties make it an interval).
        let below = finite.iter().filter(|&&x| x < q).count() as f64 / n;
        let upto = finite.iter().filter(|&&x| x <= q).count() as f64 / n;
        let slack = s.rank_error() + 1.0 / n;
        assert!(
            below - slack <= rank && rank <= upto + slack,
            "rank {rank}: q {q} occupies [{below}, {upto}]"
        );
    }
}

fn values() -> impl Strategy<Value = Vec<f64>> {
    let x = prop_oneof![
        8 => -1e6..1e6f64,
        2 => (0..20i32).prop_map(f64::from),
        1 => Just(f64::NAN),
    ];
    prop::collection::vec(x, 0..3000)
}

/// Long enough to pass the sample's k distinct values often, with repeats and −0.0.
fn long_values() -> impl Strategy<Value = Vec<f64>> {
    let x = prop_oneof![
        8 => -1e3..1e3f64,
        2 => (0..50i32).prop_map(f64::from),
        1 => Just(-0.0),
        1 => Just(f64::INFINITY),
    ];
    prop::collection::vec(x, 0..3 * SAMPLE_K)
}

fn finite(xs: &[f64]) -> Vec<f64> {
    xs.iter().copied().filter(|x| x.is_finite()).collect()
}

fn items(s: &CategoricalSummary) -> Vec<(String, u64)> {
    s.frequent_items()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn numeric_halves_merge_to_whole(xs in values(), cut in 0.0..1.0f64) {
        let k = (xs.len() as f64 * cut) as usize;
        let whole = numeric(&xs);
        let mut merged = numeric(&xs[..k]);
        merged.merge(&numeric(&xs[k..]));
        assert_numeric_equiv(&merged, &whole, &finite(&xs));
    }

    #[test]
    fn numeric_parts_merge_to_whole_in_any_grouping_bit_for_bit(
        xs in long_values(),
        cuts in prop::collection::vec(0.0..1.0f64, 0..6),
        order in any::<prop::sample::Index>(),
        flush_some in any::<bool>(),
    ) {
        let whole = numeric(&xs);
        let mut at: Vec<usize> = cuts.iter().map(|c| (xs.len() as f64 * c) as usize).collect();
        at.push(0);
        at.push(xs.len());
        at.sort_unstable();
        let mut parts: Vec<NumericSummary> = at
            .windows(2)
            .map(|w| numeric(&xs[w[0]..w[1]]))
            .collect();
        if flush_some {
            // Folding early or late must not matter.
            for p in parts.iter_mut().step_by(2) {
                p.flush();
            }
        }
        // In stream order, left to right.
        let mut left = NumericSummary::default();
        for p in &parts {
            left.merge(p);
        }
        // Reversed (commutativity) and as a tree of pairs (associativity).
        let mut reversed = NumericSummary::default();
        for p in parts.iter().rev() {
            reversed.merge(p);
        }
        let r = order.index(parts.len());
        parts.rotate_left(r);
        while parts.len() > 1 {
            let mut next = Vec::new();
            for pair in parts.chunks(2) {
                let mut m = pair[0].clone();
                if let Some(b) = pair.get(1) {
                    m.merge(b);
                }
                next.push(m);
            }
            parts = next;
        }
        let tree = parts.pop().unwrap_or_default();
        let fin = finite(&xs);
        for s in [&left, &reversed, &tree] {
            assert_numeric_equiv(s, &whole, &fin);
        }
    }

    #[test]
    fn numeric_merge_is_associative_with_identity(
        a in values(), b in values(), c in values()
    ) {
        let (sa, sb, sc) = (numeric(&a), numeric(&b), numeric(&c));
        let mut left = sa.clone();
        left.merge(&sb);
        left.merge(&sc);
        let mut bc = sb.clone();
        bc.merge(&sc);
        let mut right = sa.clone();
        right.merge(&bc);
        let all: Vec<f64> = a.iter().chain(&b).chain(&c).copied().collect();
        assert_numeric_equiv(&left, &right, &finite(&all));
        assert_numeric_equiv(&right, &left, &finite(&all));

        let mut id = NumericSummary::default();
        id.merge(&sa);
        assert_numeric_equiv(&id, &sa, &finite(&a));
        let mut same = sa.clone();
        same.merge(&NumericSummary::default());
        assert_numeric_equiv(&same, &sa, &finite(&a));
    }

    #[test]
    fn categorical_halves_merge_to_whole(
        xs in prop::collection::vec(prop::option::weighted(0.9, 0..200u8), 0..3000),
        cut in 0.0..1.0f64,
        flush_left in any::<bool>(),
    ) {
        let k = (xs.len() as f64 * cut) as usize;
        let whole = categorical(&xs);
        let mut merged = categorical(&xs[..k]);
        if flush_left {
            merged.flush();
        }
        merged.merge(&categorical(&xs[k..]));
        prop_assert_eq!(merged.count(), whole.count());
        prop_assert_eq!(merged.missing(), whole.missing());
        // Fewer than 768 distinct values: the counts are exact.
        prop_assert_eq!(merged.max_error(), 0);
        prop_assert_eq!(items(&merged), items(&whole));
        let distinct = xs.iter().flatten().collect::<std::collections::HashSet<_>>().len() as f64;
        let est = merged.distinct_estimate();
        prop_assert!((est - distinct).abs() <= (0.05 * distinct).max(1.0), "{} vs {}", est, distinct);
    }

    #[test]
    fn categorical_merge_is_associative_with_identity(
        a in prop::collection::vec(prop::option::of(0..50u8), 0..500),
        b in prop::collection::vec(prop::option::of(0..50u8), 0..500),
        c in prop::collection::vec(prop::option::of(0..50u8), 0..500),
    ) {
        let (sa, sb, sc) = (categorical(&a), categorical(&b), categorical(&c));
        let mut left = sa.clone();
        left.merge(&sb);
        left.merge(&sc);
        let mut bc = sb.clone();
        bc.merge(&sc);
        let mut right = sa.clone();
        right.merge(&bc);
        prop_assert_eq!(left.count(), right.count());
        prop_assert_eq!(left.missing(), right.missing());
        prop_assert_eq!(items(&left), items(&right));
        prop_assert!((left.distinct_estimate() - right.distinct_estimate()).abs() <= 1.0);
        let mut id = CategoricalSummary::default();
        id.merge(&sa);
        prop_assert_eq!(items(&id), items(&sa));
        prop_assert_eq!(id.count(), sa.count());
    }

    #[test]
    fn signature_halves_merge_to_whole_and_round_trip(
        rows in prop::collection::vec(
            (prop::collection::vec((0..6u8, 0..4u8, -100.0..100.0f64), 0..6), prop::option::of(0..3u8)),
            0..300,
        ),
        cut in 0.0..1.0f64,
    ) {
        let predictions: Vec<Prediction> = rows
            .iter()
            .enumerate()
            .map(|(i, (features, label))| Prediction {
                request_id: format!("r{i}"),
                model_id: "m".into(),
                model_version: "1".into(),
                timestamp: 0,
                features: features
                    .iter()
                    .map(|(name, kind, x)| {
                        let v = match kind {
                            0 => FeatureValue::Missing,
                            1 => FeatureValue::Category(format!("c{}", (*x as i64).rem_euclid(5))),
                            _ => FeatureValue::Number(*x),
                        };
                        (format!("f{name}"), v)
                    })
                    .collect(),
                predicted_label: label.map(|l| format!("class{l}")),
                predicted_value: None,
                scores: label.map(|l| vec![(format!("class{l}"), 0.5 + f64::from(l) / 10.0)]),
                tags: vec![],
            })
            .collect();
        let k = (predictions.len() as f64 * cut) as usize;
        let mut interner = FeatureInterner::new();
        let build = |interner: &mut FeatureInterner, ps: &[Prediction]| {
            let mut s = SignatureSummary::new();
            for p in ps {
                s.update_prediction(interner, p).unwrap();
            }
            s
        };
        let whole = build(&mut interner, &predictions);
        let mut merged = build(&mut interner, &predictions[..k]);
        merged.merge(&build(&mut interner, &predictions[k..]));
        prop_assert_eq!(merged.predictions(), whole.predictions());
        prop_assert_eq!(items(merged.predicted_label()), items(whole.predicted_label()));
        prop_assert_eq!(merged.score().count(), whole.score().count());
        let bytes = merged.to_bytes(&interner).unwrap();
        let mut other = FeatureInterner::new();
        let back = SignatureSummary::from_bytes(&bytes, &mut other).unwrap();
        for (id, f) in whole.features() {
            let name = interner.name(id).unwrap();
            for g in [merged.feature(id).unwrap(), back.feature_by_name(&other, name).unwrap()] {
                prop_assert_eq!(g.count(), f.count());
                prop_assert_eq!(g.missing(), f.missing());
                prop_assert_eq!(g.type_mismatches(), f.type_mismatches());
                prop_assert_eq!(g.kind(), f.kind());
                prop_assert_eq!(
                    g.categorical().map(|c| c.frequent_items()),
                    f.categorical().map(|c| c.frequent_items())
                );
                prop_assert_eq!(
                    g.numeric().and_then(|n| n.min()),
                    f.numeric().and_then(|n| n.min())
                );
            }
        }
        prop_assert_eq!(back.features().count(), whole.features().count());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new());
        let mut framed = b"DWSG\x01".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = SignatureSummary::from_bytes(&framed, &mut FeatureInterner::new());
    }

    #[test]
    fn corrupted_summaries_never_panic(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut interner = FeatureInterner::new();
        let mut s = SignatureSummary::new();
        let x = interner.intern("x").unwrap();
        let c = interner.intern("c").unwrap();
        for i in 0..600 {
            s.update_number(x, f64::from(i));
            s.update_category(c, if i % 3 == 0 { "a" } else { "b" });
            s.update_output(Some("yes"), Some(1.0), None);
        }
        let mut bytes = s.to_bytes(&interner).unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Ok(back) = SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new()) {
            // Whatever decodes must be usable without panicking.
            let mut m = back.clone();
            m.merge(&back);
            let _ = m.to_bytes(&interner);
        }
    }
}
