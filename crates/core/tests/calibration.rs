//! Calibration of the default drift tests: false-positive rate and power, measured.
//!
//! For every reference × current size in {100, 1k, 10k, 100k} × {100, 1k, 10k}, [`PAIRS`]
//! pairs of samples drawn from one distribution are compared with [`drift::default_test`]
//! (numeric: N(0, 1); categorical: five categories of shares 40/30/15/10/5 %). Asserted:
//! - the false-positive rate of every cell is at most the upper end of the 99.9 % binomial band
//!   around α = 0.05 (p-value tests: KS and χ²; the distance tests, whose threshold is
//!   max(minimum effect, null quantile), may only be below it), and so is the rate of p < α
//!   alone, which checks the distances' null distributions where the minimum effect hides
//!   them;
//! - where the test is a p-value test on exact data (KS with both samples ≤ 256 values; χ²
//!   always, its counts being exact), the rate is also above the band's
//!   lower end: the test is not needlessly conservative;
//! - the non-default distances (PSI, numeric Jensen–Shannon, Hellinger): p < α at most as often
//!   as the band's upper end, at four size pairs;
//! - power at 1k × 1k: a 0.2 σ mean shift (numeric) and a 10-point move of the first
//!   category's share to the second (categorical) are found in ≥ 90 % of pairs;
//! - past 1024 categories, where χ² runs on hash buckets: its false-positive rate is within
//!   the band and a 10-point move of a frequent category's share is found in ≥ 90 % of pairs.
//!
//! Sampling cost: a reference of 100k values is built [`REFS_LARGE`] times per cell and
//! paired with PAIRS / REFS_LARGE currents each. Pairs sharing a reference are not
//! independent, but at 100k the reference's own noise (sampling and sketch) is a tenth or
//! less of the current's at every current size, so the rate's variance grows by little; the
//! other rows draw a fresh reference per pair.
//!
//! `cargo test -p driftwatch-core --release --test calibration -- --nocapture` prints the
//! table quoted in docs/STATISTICS.md.
#![allow(clippy::unwrap_used)]

use driftwatch_core::summary::drift::{self, DriftResult, DriftSettings};
use driftwatch_core::summary::FeatureSummary;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const PAIRS: usize = 500;
const REFS_LARGE: usize = 50;
const ALPHA: f64 = 0.05;
const REFERENCE_SIZES: [usize; 4] = [100, 1_000, 10_000, 100_000];
const CURRENT_SIZES: [usize; 3] = [100, 1_000, 10_000];
const SHARES: [f64; 5] = [0.40, 0.30, 0.15, 0.10, 0.05];
const CATEGORIES: [&str; 5] = ["a", "b", "c", "d", "e"];

fn normal(rng: &mut SmallRng) -> f64 {
    // Box–Muller.
    let u: f64 = rng.gen_range(f64::EPSILON..1.0);
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn numeric(rng: &mut SmallRng, n: usize, shift: f64) -> FeatureSummary {
    let mut f = FeatureSummary::default();
    for _ in 0..n {
        f.update_number(normal(rng) + shift);
    }
    f.flush();
    f
}

fn categorical(rng: &mut SmallRng, n: usize, moved: f64) -> FeatureSummary {
    let mut shares = SHARES;
    shares[0] -= moved;
    shares[1] += moved;
    let mut f = FeatureSummary::default();
    for _ in 0..n {
        let mut u: f64 = rng.gen();
        let mut k = 0;
        while k + 1 < shares.len() && u >= shares[k] {
            u -= shares[k];
            k += 1;
        }
        f.update_category(CATEGORIES[k]);
    }
    f.flush();
    f
}

type Make = fn(&mut SmallRng, usize, f64) -> FeatureSummary;

/// Share of `pairs` pairs (reference of `n`, current of `m`, current changed by `effect`)
/// where the default test drifted, the share where its p-value alone was below α, and the
/// method it used.
fn rate(
    make: Make,
    n: usize,
    m: usize,
    effect: f64,
    pairs: usize,
    seed: u64,
) -> (f64, f64, String) {
    let mut rng = SmallRng::seed_from_u64(seed ^ (n as u64) << 20 ^ (m as u64) << 40);
    let refs = if n >= 100_000 { REFS_LARGE } else { pairs };
    let per_ref = pairs.div_ceil(refs);
    let mut hits = 0;
    let mut p_hits = 0;
    let mut total = 0;
    let mut method = String::new();
    while total < pairs {
        let reference = make(&mut rng, n, 0.0);
        for _ in 0..per_ref.min(pairs - total) {
            let current = make(&mut rng, m, effect);
            let r: DriftResult = drift::default_test(&reference, &current).unwrap();
            method = r.method.as_str().to_owned();
            hits += usize::from(r.drifted);
            p_hits += usize::from(r.p_value.unwrap() < ALPHA);
            total += 1;
        }
    }
    (
        hits as f64 / pairs as f64,
        p_hits as f64 / pairs as f64,
        method,
    )
}

/// 99.9 % binomial band around `p` for `n` trials (normal approximation, z = 3.29).
fn band(p: f64, n: usize) -> (f64, f64) {
    let half = 3.29 * (p * (1.0 - p) / n as f64).sqrt();
    (p - half, p + half)
}

#[allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    reason = "prints how long the run took; nothing asserts it"
)]
fn fpr_table(kind: &str, make: Make, exact_p_test: &dyn Fn(&str, usize, usize) -> bool) {
    let (lo, hi) = band(ALPHA, PAIRS);
    let started = std::time::Instant::now();
    let mut table = String::new();
    for n in REFERENCE_SIZES {
        for m in CURRENT_SIZES {
            let (fpr, p_rate, method) = rate(make, n, m, 0.0, PAIRS, 1);
            table.push_str(&format!(
                "| {kind} | {n} | {m} | {method} | {fpr:.3} | {p_rate:.3} |\n"
            ));
            assert!(fpr <= hi, "{kind} {n}×{m} {method}: FPR {fpr} above {hi}");
            // The null distribution itself: p < α as often as α says (distances too).
            assert!(
                p_rate <= hi,
                "{kind} {n}×{m} {method}: p < α in {p_rate}, above {hi}"
            );
            if exact_p_test(&method, n, m) {
                assert!(fpr >= lo, "{kind} {n}×{m} {method}: FPR {fpr} below {lo}");
            }
        }
    }
    println!(
        "| kind | reference | current | test | drifted | p < 0.05 |\n|---|---|---|---|---|---|\n{table}\
         {kind}: {PAIRS} pairs per cell, band [{lo:.3}, {hi:.3}], {:?}",
        started.elapsed()
    );
}

#[test]
fn numeric_false_positive_rates_hold_alpha() {
    fpr_table("numeric", numeric, &|method, n, m| {
        method == "ks" && n <= 256 && m <= 256
    });
}

#[test]
fn categorical_false_positive_rates_hold_alpha() {
    fpr_table("categorical", categorical, &|method, _, _| {
        method == "chi_square"
    });
}

#[test]
fn power_at_one_thousand() {
    let (numeric_power, _, method) = rate(numeric, 1_000, 1_000, 0.2, PAIRS, 2);
    println!("power numeric 0.2σ shift, 1k × 1k, {method}: {numeric_power:.3}");
    let (categorical_power, _, method) = rate(categorical, 1_000, 1_000, 0.10, PAIRS, 3);
    println!("power categorical 10-point move, 1k × 1k, {method}: {categorical_power:.3}");
    assert!(numeric_power >= 0.9, "{numeric_power}");
    assert!(categorical_power >= 0.9, "{categorical_power}");
}

/// Rate of p < α of a non-default test over `PAIRS` pairs of one distribution.
fn p_rate(
    make: Make,
    n: usize,
    m: usize,
    test: &dyn Fn(&FeatureSummary, &FeatureSummary) -> f64,
) -> f64 {
    let mut rng = SmallRng::seed_from_u64(5 ^ (n as u64) << 20 ^ (m as u64) << 40);
    let hits = (0..PAIRS)
        .filter(|_| {
            let (r, c) = (make(&mut rng, n, 0.0), make(&mut rng, m, 0.0));
            test(&r, &c) < ALPHA
        })
        .count();
    hits as f64 / PAIRS as f64
}

#[test]
fn other_distances_null_distributions_hold_alpha() {
    let set = DriftSettings::default();
    let (_, hi) = band(ALPHA, PAIRS);
    let mut table = String::new();
    for (n, m) in [(100, 100), (1_000, 100), (1_000, 1_000), (10_000, 1_000)] {
        let num = |r: &FeatureSummary, c: &FeatureSummary| {
            (r.numeric().unwrap().clone(), c.numeric().unwrap().clone())
        };
        let cat = |r: &FeatureSummary, c: &FeatureSummary| {
            (
                r.categorical().unwrap().clone(),
                c.categorical().unwrap().clone(),
            )
        };
        let rates = [
            (
                "psi",
                p_rate(numeric, n, m, &|r, c| {
                    let (r, c) = num(r, c);
                    drift::psi(&r, &c, &set).unwrap().p_value.unwrap()
                }),
            ),
            (
                "jensen_shannon (numeric)",
                p_rate(numeric, n, m, &|r, c| {
                    let (r, c) = num(r, c);
                    drift::jensen_shannon(&r, &c, &set)
                        .unwrap()
                        .p_value
                        .unwrap()
                }),
            ),
            (
                "hellinger",
                p_rate(categorical, n, m, &|r, c| {
                    let (r, c) = cat(r, c);
                    drift::hellinger(&r, &c, &set).unwrap().p_value.unwrap()
                }),
            ),
        ];
        for (name, rate) in rates {
            table.push_str(&format!("| {name} | {n} | {m} | {rate:.3} |\n"));
            assert!(rate <= hi, "{name} {n}×{m}: p < α in {rate}, above {hi}");
        }
    }
    println!("| test | reference | current | p < 0.05 |\n|---|---|---|---|\n{table}");
}

/// Categories of the bucketed-regime check, Zipf (s = 1) distributed.
const ZIPF_CATEGORIES: usize = 2_000;

/// A sampler of the Zipf categories, with `moved` of the first category's share moved to the
/// second.
fn zipf(moved: f64) -> (Vec<String>, Vec<f64>) {
    let names = (0..ZIPF_CATEGORIES).map(|k| format!("z{k}")).collect();
    let weights: Vec<f64> = (1..=ZIPF_CATEGORIES).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut shares: Vec<f64> = weights.iter().map(|w| w / total).collect();
    shares[0] -= moved;
    shares[1] += moved;
    let cdf = shares
        .iter()
        .scan(0.0, |acc, s| {
            *acc += s;
            Some(*acc)
        })
        .collect();
    (names, cdf)
}

fn zipf_summary(
    rng: &mut SmallRng,
    n: usize,
    (names, cdf): &(Vec<String>, Vec<f64>),
) -> driftwatch_core::summary::CategoricalSummary {
    let mut s = driftwatch_core::summary::CategoricalSummary::new();
    for _ in 0..n {
        let u: f64 = rng.gen();
        let k = cdf.partition_point(|&c| c < u).min(names.len() - 1);
        s.update(&names[k]);
    }
    s.flush();
    s
}

/// Beyond 1024 categories the χ² test runs on hash buckets: a reference of 20k values of
/// 2 000 Zipf categories (bucketed) against currents of 1k (exact, bucketed alike for the
/// test). Its false-positive rate stays within the binomial band, and a 10-point move of the
/// most frequent category's share (≈ 12 %) to the second is found in ≥ 90 % of pairs.
#[test]
fn chi_square_on_buckets_holds_alpha_and_finds_a_moved_share() {
    let set = DriftSettings::default();
    let (lo, hi) = band(ALPHA, PAIRS);
    let same = zipf(0.0);
    let moved = zipf(0.10);
    let mut rng = SmallRng::seed_from_u64(11);
    let (mut false_alarms, mut found) = (0, 0);
    let per_ref = PAIRS / REFS_LARGE;
    for _ in 0..REFS_LARGE {
        let reference = zipf_summary(&mut rng, 20_000, &same);
        assert!(!reference.is_exact());
        for _ in 0..per_ref {
            let null = zipf_summary(&mut rng, 1_000, &same);
            false_alarms +=
                usize::from(drift::chi_square(&reference, &null, &set).unwrap().drifted);
            let shifted = zipf_summary(&mut rng, 1_000, &moved);
            found += usize::from(
                drift::chi_square(&reference, &shifted, &set)
                    .unwrap()
                    .drifted,
            );
        }
    }
    let fpr = false_alarms as f64 / PAIRS as f64;
    let power = found as f64 / PAIRS as f64;
    println!(
        "chi_square on buckets, 2000 Zipf categories, 20k × 1k: false positives {fpr:.3} \
         (band [{lo:.3}, {hi:.3}]), power of a 10-point move {power:.3}"
    );
    assert!(
        (lo..=hi).contains(&fpr),
        "false-positive rate {fpr} outside [{lo}, {hi}]"
    );
    assert!(power >= 0.9, "power {power}");
}
