//! Unit and property tests of [`CategoricalSummary`].
#![allow(clippy::unwrap_used)]

use super::*;
use crate::summary::{CATEGORY_BUCKETS, CATEGORY_EXACT_MAX};

#[test]
fn counts_are_exact_below_capacity() {
    let mut s = CategoricalSummary::new();
    for i in 0..3000u32 {
        s.update(&format!("v{}", i % 100));
    }
    s.update_missing();
    assert_eq!(s.count(), 3000);
    assert_eq!(s.missing(), 1);
    assert_eq!(s.estimate("v7"), 30);
    assert_eq!(s.max_error(), 0);
    let items = s.frequent_items();
    assert_eq!(items.len(), 100);
    assert_eq!(items.iter().map(|(_, c)| c).sum::<u64>(), 3000);
    let d = s.distinct_estimate();
    assert!((d - 100.0).abs() <= 100.0 * 0.05, "{d}");
}

#[test]
fn staged_and_flushed_reads_agree() {
    let mut s = CategoricalSummary::new();
    s.update("a");
    s.update("a");
    s.update("b");
    assert!(s.has_staged());
    let before = s.frequent_items();
    s.flush();
    assert!(!s.has_staged());
    assert_eq!(before, s.frequent_items());
    assert_eq!(before, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
}

#[test]
fn merge_adds_counts_and_unions_distincts() {
    let mut a = CategoricalSummary::new();
    let mut b = CategoricalSummary::new();
    for i in 0..500 {
        a.update(&format!("x{}", i % 50));
        b.update(&format!("x{}", 25 + i % 50));
    }
    b.flush();
    a.merge(&b);
    assert_eq!(a.count(), 1000);
    assert_eq!(a.estimate("x30"), 20);
    assert_eq!(a.estimate("x0"), 10);
    let d = a.distinct_estimate();
    assert!((d - 75.0).abs() <= 75.0 * 0.05, "{d}");
}

#[test]
fn high_cardinality_stays_within_the_error_bound() {
    let mut s = CategoricalSummary::new();
    let n = 20_000u64;
    for i in 0..n {
        // One heavy hitter (25 %) among many singletons.
        if i % 4 == 0 {
            s.update("heavy");
        } else {
            s.update(&format!("id{i}"));
        }
    }
    let est = s.estimate("heavy");
    assert!(est >= n / 4);
    assert!(est - n / 4 <= s.max_error());
    assert!((s.max_error() as f64) <= 3.5 / 1024.0 * n as f64 + 1.0);
    let d = s.distinct_estimate();
    let truth = (n - n / 4 + 1) as f64;
    assert!((d / truth - 1.0).abs() < 3.0 * 0.0163, "{d} vs {truth}");
}

#[test]
fn the_switch_to_buckets_happens_past_the_exact_limit_and_keeps_every_count() {
    let mut s = CategoricalSummary::new();
    // CATEGORY_EXACT_MAX categories with "heavy".
    for i in 1..CATEGORY_EXACT_MAX {
        s.update(&format!("k{i}"));
        s.update("heavy");
    }
    assert!(s.is_exact());
    assert_eq!(s.exact_counts().unwrap().len(), CATEGORY_EXACT_MAX);
    let before = s.bucket_counts();
    s.update("one more");
    s.flush();
    assert!(!s.is_exact() && s.exact_counts().is_none());
    // The exact table is gone (bounded memory), its counts are in the buckets.
    assert!(s.exact.is_empty());
    let after = s.bucket_counts();
    assert_eq!(after.len(), CATEGORY_BUCKETS);
    assert_eq!(after.iter().sum::<u64>(), s.count());
    let mut expected = before;
    expected[category_bucket("one more")] += 1;
    assert_eq!(after, expected);
    // Display still names the heavy category.
    assert_eq!(s.frequent_items()[0].0, "heavy");
    let d = s.distinct_estimate();
    let truth = (CATEGORY_EXACT_MAX + 1) as f64;
    assert!((d / truth - 1.0).abs() < 0.05, "{d}");
}

#[test]
fn merging_a_bucketed_summary_into_an_exact_one_buckets_both() {
    let mut wide = CategoricalSummary::new();
    for i in 0..2 * CATEGORY_EXACT_MAX {
        wide.update(&format!("w{i}"));
    }
    let mut small = CategoricalSummary::new();
    small.update("a");
    small.update("a");
    small.flush();
    let mut merged = small.clone();
    merged.merge(&wide);
    let mut other = wide.clone();
    other.merge(&small);
    assert_eq!(merged.bucket_counts(), other.bucket_counts());
    assert_eq!(
        merged.bucket_counts()[category_bucket("a")],
        wide.bucket_counts()[category_bucket("a")] + 2
    );
    assert_eq!(merged.count(), 2 * CATEGORY_EXACT_MAX as u64 + 2);
}

#[test]
fn malformed_categorical_bytes_are_refused() {
    use crate::summary::codec::{decode_categorical, encode_categorical};
    let mut s = CategoricalSummary::new();
    for v in ["b", "a", "a"] {
        s.update(v);
    }
    let (bytes, pure) = encode_categorical(&s);
    assert_eq!(bytes.len(), pure);
    assert!(decode_categorical(&bytes).is_ok());
    // count:u64 missing:u64 mode:u8 n:u16 { len value count } ...: "a" (count 2) then "b".
    let head = 8 + 8 + 1 + 2;
    assert_eq!(&bytes[head..head + 3], &[1, b'a', 2]);
    let mut unsorted = bytes.clone();
    unsorted[head + 1] = b'c';
    assert!(decode_categorical(&unsorted).is_err());
    let mut zero = bytes.clone();
    zero[head + 2] = 0;
    assert!(decode_categorical(&zero).is_err());
    let mut mode = bytes.clone();
    mode[16] = 7;
    assert!(decode_categorical(&mode).is_err());
    let mut count = bytes.clone();
    count[0] = 4;
    assert!(decode_categorical(&count).is_err());
    // A bucketed summary of too few values.
    let mut wide = CategoricalSummary::new();
    for i in 0..=CATEGORY_EXACT_MAX {
        wide.update(&format!("w{i}"));
    }
    let (bytes, pure) = encode_categorical(&wide);
    assert!(pure < bytes.len());
    assert!(decode_categorical(&bytes).is_ok());
    let mut few = bytes.clone();
    let n = u64::try_from(CATEGORY_EXACT_MAX).unwrap();
    few[..8].copy_from_slice(&n.to_le_bytes());
    assert!(decode_categorical(&few).is_err());
    for len in 0..bytes.len() {
        assert!(
            decode_categorical(&bytes[..len]).is_err(),
            "prefix of {len}"
        );
    }
}

mod props {
    //! Summarizing a multiset in any split, update order, flush timing and merge grouping
    //! gives the same summary: the same bytes (all of them while exact, the counts once
    //! bucketed) and the same χ² verdicts.
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};

    use super::super::CategoricalSummary;
    use crate::summary::codec::{decode_categorical, encode_categorical};
    use crate::summary::drift::{chi_square, DriftSettings};
    use crate::summary::CATEGORY_EXACT_MAX;

    /// The multiset: every category `c0..c{distinct}` once, plus `extra` values skewed
    /// towards the first categories, and `missing` nulls (`None`).
    fn multiset(distinct: usize, extra: usize, missing: usize, seed: u64) -> Vec<Option<String>> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut values: Vec<Option<String>> =
            (0..distinct).map(|i| Some(format!("c{i}"))).collect();
        for _ in 0..extra {
            // Squared uniform: a long tail with a few heavy categories.
            let u: f64 = rng.gen();
            let i = ((u * u) * distinct as f64) as usize;
            values.push(Some(format!("c{}", i.min(distinct - 1))));
        }
        values.extend(std::iter::repeat_n(None, missing));
        values
    }

    /// Summarizes `values` in a random order, cut into random parts (each flushed at random
    /// points), merged pairwise in a random grouping and direction.
    fn summarize(values: &[Option<String>], seed: u64) -> CategoricalSummary {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut order: Vec<&Option<String>> = values.iter().collect();
        order.shuffle(&mut rng);
        let parts = rng.gen_range(1..=8);
        let mut pool: Vec<CategoricalSummary> =
            (0..parts).map(|_| CategoricalSummary::new()).collect();
        for v in order {
            let i = rng.gen_range(0..parts);
            let s = &mut pool[i];
            match v {
                Some(v) => s.update(v),
                None => s.update_missing(),
            }
            if rng.gen_ratio(1, 500) {
                s.flush();
            }
        }
        while pool.len() > 1 {
            let a = pool.swap_remove(rng.gen_range(0..pool.len()));
            let j = rng.gen_range(0..pool.len());
            if rng.gen_bool(0.5) {
                pool[j].merge(&a);
            } else {
                let mut a = a;
                a.merge(&pool[j]);
                pool[j] = a;
            }
        }
        pool.pop().unwrap_or_default()
    }

    fn check(
        distinct: usize,
        extra: usize,
        missing: usize,
        seeds: (u64, u64, u64),
    ) -> Result<(), TestCaseError> {
        let values = multiset(distinct, extra, missing, seeds.0);
        let (a, b) = (summarize(&values, seeds.1), summarize(&values, seeds.2));
        let (ba, pa) = encode_categorical(&a);
        let (bb, pb) = encode_categorical(&b);
        prop_assert_eq!(a.is_exact(), distinct <= CATEGORY_EXACT_MAX);
        prop_assert_eq!(pa, pb);
        prop_assert_eq!(&ba[..pa], &bb[..pb]);
        if a.is_exact() {
            prop_assert_eq!(&ba, &bb);
        }
        prop_assert_eq!(a.count(), (distinct + extra) as u64);
        prop_assert_eq!(a.missing(), missing as u64);
        // The bytes decode to a summary that encodes alike.
        let back = decode_categorical(&ba).unwrap();
        // (The display sketches need not re-serialize to the same bytes; the counts do.)
        let again = encode_categorical(&back);
        prop_assert_eq!(again.1, pa);
        prop_assert_eq!(&again.0[..pa], &ba[..pa]);
        if a.is_exact() {
            prop_assert_eq!(&again.0, &ba);
        }
        // Verdicts against a reference of the other regime and of the same one.
        let set = DriftSettings::default();
        for reference in [
            summarize(&multiset(40, 2000, 0, 7), 1),
            summarize(&multiset(1500, 3000, 0, 8), 2),
        ] {
            let pairs = [
                (
                    chi_square(&reference, &a, &set),
                    chi_square(&reference, &b, &set),
                ),
                (
                    chi_square(&a, &reference, &set),
                    chi_square(&b, &reference, &set),
                ),
            ];
            for (ra, rb) in pairs {
                let (ra, rb) = (ra.unwrap(), rb.unwrap());
                prop_assert_eq!(ra.statistic.to_bits(), rb.statistic.to_bits());
                prop_assert_eq!(ra.p_value.map(f64::to_bits), rb.p_value.map(f64::to_bits));
                prop_assert_eq!(ra.drifted, rb.drifted);
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn few_categories_give_identical_bytes_and_verdicts_in_any_grouping(
            distinct in 1usize..60,
            extra in 0usize..3000,
            missing in 0usize..20,
            seeds in any::<(u64, u64, u64)>(),
        ) {
            check(distinct, extra, missing, seeds)?;
        }

        #[test]
        fn many_categories_give_identical_counts_and_verdicts_in_any_grouping(
            distinct in (CATEGORY_EXACT_MAX - 30)..2500,
            extra in 0usize..4000,
            missing in 0usize..20,
            seeds in any::<(u64, u64, u64)>(),
        ) {
            check(distinct, extra, missing, seeds)?;
        }
    }
}
