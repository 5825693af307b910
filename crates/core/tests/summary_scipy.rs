//! Drift statistics computed from driftwatch summaries agree with scipy on the same samples.
//!
//! The fixture is made by `scripts/fixtures/scipy_drift_stats.py` (its docstring has the exact
//! definitions and the generator both sides share for the samples of 10³, 10⁵ and 10⁶
//! values). Tolerances, each from a stated bound rather than picked by hand:
//! - samples of at most 2048 distinct values (`small_*`, `1e3_*`): the distinct-value sample
//!   (k = 2048) keeps every value, so every statistic and the exact KS p-value must equal
//!   scipy's up to rounding (1e-9);
//! - the KS p-value *function* at scipy's own D and sizes: exactly scipy's below 10 001 values
//!   per side (1e-9); above, Stephens' approximation of `kstwo`, within [`kstwo_tol`] (the
//!   difference from `kstwo.sf` over the fixture's grid, asserted there too);
//! - on the values a sample kept, weighted by their counts (the fixture's `sample`, computed
//!   with scipy/numpy's weighted functions): KS D, normed Wasserstein, bins, PSI and JS to
//!   rounding (1e-9), for every generated case;
//! - sampled streams (10⁵, 10⁶ values) against the whole samples: each sample's CDF is within its DKW bound
//!   ε = √(ln(2/0.01) / (2 n_K)) at 99 % (`rank_error()`, n_K the sample's Kish size; ≈ 3.6 %
//!   at k = 2048). So KS D is within ε_r + ε_c; our p-value lies between ks_2samp_p at
//!   D ∓ (ε_r + ε_c) at the effective sizes the test uses; normed Wasserstein within
//!   `wasserstein_sample_error` (the 99 % quantile of both sides' Brownian-bridge CDF errors
//!   taken jointly, ≈ 0.08 at n_K = 2048, below the 0.1 minimum effect);
//!   reference bins (cut at the sample's own deciles) within two kept values' weight of
//!   scipy's; current bins within z · √(p (1 − p) (1/n_K,r + 1/n_K,c)), z = 3.29 (99 % jointly
//!   over the 10 bins, Bonferroni): the binomial error of the current sample's bin plus that
//!   of the edges cut from the reference sample; JS (a metric) within JS(r, r') + JS(c, c');
//!   PSI within its change over the box of those bin errors;
//! - categorical samples have fewer distinct values than the frequent-items sketch's capacity
//!   (768), where its counts are exact (max_error 0): χ² (`chi2_contingency`, no Yates), its
//!   p-value and degrees of freedom, JS and Hellinger match to 1e-9.
#![allow(clippy::unwrap_used)]

use driftwatch_core::summary::drift::{self, jensen_shannon_of, DriftSettings};
use driftwatch_core::summary::{CategoricalSummary, NumericSummary, SAMPLE_K};
use serde_json::Value;

/// Tolerance of the asymptotic `kstwo` tail at scipy's value `sf`: 2.5 % relative plus 10⁻⁴
/// absolute. Over the fixture's grid (n 99 … 500 000, p 0.5 … 0.001) Stephens' formula is
/// within 2.1 % of scipy's exact `kstwo.sf`, and within 3·10⁻⁵ absolute near p = 0.05, where
/// verdicts are decided.
fn kstwo_tol(sf: f64) -> f64 {
    0.025 * sf + 1e-4
}

#[allow(
    clippy::disallowed_methods,
    reason = "reference vectors are files written by another tool; the core under test reads none"
)]
fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/scipy/drift_stats.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn f(case: &Value, key: &str) -> f64 {
    case[key].as_f64().unwrap()
}

/// The fixture's counter-based splitmix64 Irwin–Hall(4) sample (see the script).
fn generated(spec: &Value) -> Vec<f64> {
    let seed = spec["seed"].as_u64().unwrap();
    let n = spec["n"].as_u64().unwrap();
    let (loc, scale) = (f(spec, "loc"), f(spec, "scale"));
    let uniform = |i: u64| {
        let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    };
    (0..n)
        .map(|i| {
            let s =
                ((uniform(4 * i) + uniform(4 * i + 1)) + uniform(4 * i + 2)) + uniform(4 * i + 3);
            loc + scale * (s - 2.0)
        })
        .collect()
}

fn samples(case: &Value) -> (Vec<f64>, Vec<f64>) {
    match case.get("generated") {
        Some(g) => (generated(&g["reference"]), generated(&g["current"])),
        None => (floats(&case["reference"]), floats(&case["current"])),
    }
}

fn numeric(xs: &[f64]) -> NumericSummary {
    let mut s = NumericSummary::new();
    for &x in xs {
        s.update(x);
    }
    s.flush();
    s
}

fn close(ours: f64, theirs: f64, tol: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours} vs scipy {theirs} (tolerance {tol})"
    );
}

/// z of a two-sided 99 % bound shared by 10 bins (Bonferroni): Φ⁻¹(1 − 0.01 / 20).
const Z_BINS: f64 = 3.290_527;

/// The largest kept count as a share of the sample's weight: how far one kept value moves a
/// sampled CDF.
fn atom(s: &NumericSummary) -> f64 {
    let sample = s.sample();
    let max = sample.entries().iter().map(|e| e.count).max().unwrap_or(0);
    max as f64 / sample.weight().max(1) as f64
}

#[test]
fn numeric_statistics_agree_with_scipy() {
    let set = DriftSettings::default();
    let doc = fixture();
    let cases = doc["numeric"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (rx, cx) = samples(case);
        let (n, m) = (rx.len() as u64, cx.len() as u64);
        assert_eq!(
            (n, m),
            (case["n"].as_u64().unwrap(), case["m"].as_u64().unwrap())
        );
        let (r, c) = (numeric(&rx), numeric(&cx));
        let (er, ec) = (r.rank_error(), c.rank_error());
        let exact = r.is_exact() && c.is_exact();
        assert_eq!(
            exact,
            er == 0.0 && ec == 0.0,
            "{name}: error of an exact sample"
        );
        let few = n <= SAMPLE_K as u64 && m <= SAMPLE_K as u64;
        assert_eq!(exact, few, "{name}: sample mode");

        // The p-value function at scipy's own D: scipy's exact or kstwo branch.
        let d = f(case, "ks_statistic");
        let p_fn = drift::ks_2samp_p(d, n, m);
        let scipy_p = f(case, "ks_pvalue");
        let tol = if n.max(m) <= 10_000 {
            1e-9
        } else {
            kstwo_tol(scipy_p)
        };
        close(p_fn, scipy_p, tol, &format!("{name}: ks_2samp_p"));

        let ks = drift::ks(&r, &c, &set).unwrap();
        let w = drift::wasserstein(&r, &c, &set).unwrap();
        let psi = drift::psi(&r, &c, &set).unwrap();
        let js = drift::jensen_shannon(&r, &c, &set).unwrap();
        let (rb, cb) = drift::decile_bins(&r, &c).unwrap();
        let (srb, scb) = (
            floats(&case["reference_bins"]),
            floats(&case["current_bins"]),
        );
        assert_eq!(rb.len(), srb.len(), "{name}: bin count");
        close(drift::psi_of(&srb, &scb), f(case, "psi"), 1e-9, name);
        close(
            jensen_shannon_of(&srb, &scb),
            f(case, "jensen_shannon"),
            1e-9,
            name,
        );

        // On the values the sample kept, weighted by their counts, the statistics are scipy's
        // and numpy's to rounding: what is left between them and the whole samples' values
        // is the sample's own error, bounded below.
        if let Some(sample) = case.get("sample") {
            let kept = |s: &NumericSummary| s.sample().entries().len();
            assert_eq!(
                [kept(&r), kept(&c)],
                [0, 1].map(|i| sample["kept"][i].as_u64().unwrap() as usize),
                "{name}: kept values"
            );
            let on_sample = |what: &str| format!("{name}: {what} on the sample");
            close(
                ks.statistic,
                f(sample, "ks_statistic"),
                1e-9,
                &on_sample("KS D"),
            );
            close(
                w.statistic,
                f(sample, "wasserstein_normed"),
                1e-9,
                &on_sample("W"),
            );
            for (ours, theirs) in rb.iter().chain(&cb).zip(
                floats(&sample["reference_bins"])
                    .iter()
                    .chain(&floats(&sample["current_bins"])),
            ) {
                close(*ours, *theirs, 1e-9, &on_sample("bin"));
            }
            close(psi.statistic, f(sample, "psi"), 1e-9, &on_sample("PSI"));
            close(
                js.statistic,
                f(sample, "jensen_shannon"),
                1e-9,
                &on_sample("JS"),
            );
        }

        if exact {
            let tol = 1e-9;
            close(ks.statistic, d, tol, name);
            close(ks.p_value.unwrap(), f(case, "ks_pvalue"), tol, name);
            close(w.statistic, f(case, "wasserstein_normed"), tol, name);
            close(psi.statistic, f(case, "psi"), tol, name);
            close(js.statistic, f(case, "jensen_shannon"), tol, name);
            continue;
        }

        let d_tol = er + ec;
        close(ks.statistic, d, d_tol, &format!("{name}: KS D"));
        // Our p-value: scipy's function at the effective sizes, for a D within the bound.
        let size = |s: &NumericSummary| (drift::numeric_effective_size(s).round() as u64).max(1);
        let (n_e, m_e) = (size(&r), size(&c));
        let p = ks.p_value.unwrap();
        let p_lo = drift::ks_2samp_p(d + d_tol, n_e, m_e);
        let p_hi = drift::ks_2samp_p((d - d_tol).max(0.0), n_e, m_e);
        assert!(
            p_lo <= p && p <= p_hi,
            "{name}: p {p} not in [{p_lo}, {p_hi}]"
        );

        let w_tol = drift::wasserstein_sample_error(&r, &c);
        close(
            w.statistic,
            f(case, "wasserstein_normed"),
            w_tol,
            &format!("{name}: W"),
        );

        let dr = 2.0 * atom(&r) + 2.0 / n as f64;
        let (kr, kc) = (r.sample_size(), c.sample_size());
        let dcs: Vec<f64> = cb
            .iter()
            .map(|&p| Z_BINS * (p * (1.0 - p) * (1.0 / kr + 1.0 / kc)).sqrt())
            .collect();
        for (i, (ours, theirs)) in rb.iter().zip(&srb).enumerate() {
            close(*ours, *theirs, dr, &format!("{name}: reference bin {i}"));
        }
        for (i, ((ours, theirs), dc)) in cb.iter().zip(&scb).zip(&dcs).enumerate() {
            close(*ours, *theirs, *dc, &format!("{name}: current bin {i}"));
        }
        let js_tol = jensen_shannon_of(&rb, &srb) + jensen_shannon_of(&cb, &scb) + 1e-12;
        close(
            js.statistic,
            f(case, "jensen_shannon"),
            js_tol,
            &format!("{name}: JS"),
        );
        // Each bin's term (c − r) ln(c / r) is jointly convex, and monotone in r and c on
        // either side of c = r: its extremes over the box r ± δ_r, c ± δ_c are at corners
        // (its minimum is 0 when the box meets c = r).
        let term = |r: f64, c: f64| {
            let (r, c) = (r.max(drift::PSI_EPSILON), c.max(drift::PSI_EPSILON));
            (c - r) * (c / r).ln()
        };
        let psi_tol: f64 = srb
            .iter()
            .zip(&scb)
            .zip(&dcs)
            .map(|((&r, &c), &dc)| {
                let t = term(r, c);
                let corners = [
                    (r - dr, c - dc),
                    (r - dr, c + dc),
                    (r + dr, c - dc),
                    (r + dr, c + dc),
                ]
                .map(|(a, b)| term(a, b));
                let high = corners.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let low = if (r - dr) <= (c + dc) && (c - dc) <= (r + dr) {
                    0.0
                } else {
                    corners.iter().copied().fold(f64::INFINITY, f64::min)
                };
                (high - t).max(t - low)
            })
            .sum();
        close(
            psi.statistic,
            f(case, "psi"),
            psi_tol,
            &format!("{name}: PSI"),
        );
        println!(
            "{name}: |ΔD| {:.5} (tol {d_tol:.5}), |ΔW| {:.5} (tol {w_tol:.4}), |ΔPSI| {:.5} (tol {psi_tol:.4}), n_K {kr:.0}/{kc:.0}",
            (ks.statistic - d).abs(),
            (w.statistic - f(case, "wasserstein_normed")).abs(),
            (psi.statistic - f(case, "psi")).abs(),
        );
    }
}

#[test]
fn kstwo_approximation_stays_within_its_tolerance() {
    let doc = fixture();
    let mut worst: f64 = 0.0;
    for row in doc["kstwo"].as_array().unwrap() {
        let (n, d, sf) = (f(row, "n"), f(row, "d"), f(row, "sf"));
        let ours = drift::kstwo_sf(d, n);
        worst = worst.max((ours - sf).abs());
        close(ours, sf, kstwo_tol(sf), &format!("kstwo n {n} d {d}"));
    }
    println!("kstwo: largest |ours − scipy| = {worst:.2e}");
}

fn categorical(counts: &Value) -> CategoricalSummary {
    let mut s = CategoricalSummary::new();
    // Interleave the categories, as a stream would.
    let mut left: Vec<(String, u64)> = counts
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    while left.iter().any(|(_, n)| *n > 0) {
        for (k, n) in &mut left {
            if *n > 0 {
                s.update(k);
                *n -= 1;
            }
        }
    }
    s
}

#[test]
fn categorical_statistics_agree_with_scipy() {
    let set = DriftSettings::default();
    let doc = fixture();
    let cases = doc["categorical"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (r, c) = (
            categorical(&case["reference"]),
            categorical(&case["current"]),
        );
        assert_eq!(
            (r.max_error(), c.max_error()),
            (0, 0),
            "{name}: exact counts"
        );
        let (rc, cc) = drift::category_counts(&r, &c).unwrap();
        assert_eq!(
            rc.len() - 1,
            case["chi_square_dof"].as_u64().unwrap() as usize
        );
        let chi = drift::chi_square(&r, &c, &set).unwrap();
        let rel = |ours: f64, theirs: f64, what: &str| {
            close(
                ours,
                theirs,
                1e-9 * theirs.abs().max(1e-300),
                &format!("{name}: {what}"),
            )
        };
        rel(chi.statistic, f(case, "chi_square_statistic"), "chi2");
        rel(chi.p_value.unwrap(), f(case, "chi_square_pvalue"), "chi2 p");
        let (stat, p) = drift::chi_square_of(&rc, &cc);
        rel(stat, f(case, "chi_square_statistic"), "chi2 of the table");
        rel(p, f(case, "chi_square_pvalue"), "chi2 p of the table");
        close(
            drift::jensen_shannon_categorical(&r, &c, &set)
                .unwrap()
                .statistic,
            f(case, "jensen_shannon"),
            1e-9,
            name,
        );
        close(
            drift::hellinger(&r, &c, &set).unwrap().statistic,
            f(case, "hellinger"),
            1e-9,
            name,
        );
    }
}
