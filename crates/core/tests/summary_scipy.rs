//! Drift statistics computed from driftwatch summaries agree with scipy on the same samples.
//!
//! The fixture is made by `scripts/fixtures/scipy_drift_stats.py` (see its docstring for the
//! exact definitions). Tolerances:
//! - samples of at most 256 values (`small_*`): the KLL sketch (k = 256) keeps every value, so
//!   every statistic must equal scipy's up to floating-point rounding (1e-9);
//! - larger samples (`large_*`): each sketched CDF value is within the KLL rank error
//!   ε = [`KLL_RANK_ERROR`] (≈ 1.05 %, 99 % confidence) and each bin proportion within the PMF
//!   error δ = [`KLL_PMF_ERROR`] (≈ 1.31 %). So KS D must be within 2ε; the KS p-value within
//!   the Kolmogorov tail at D ± 2ε; Wasserstein ∫|F − G| within 2ε · (value range) / σ_ref;
//!   every bin proportion within δ; JS (a metric) within JS(r, r') + JS(c, c') of scipy's, r'
//!   and c' being our bins; PSI within its first- and second-order change under a δ move of
//!   every proportion;
//! - categorical samples have fewer distinct values than the frequent-items sketch's capacity
//!   (768), where its counts are exact: χ², p-value, JS and Hellinger must match to 1e-9.
#![allow(clippy::unwrap_used)]

use driftwatch_core::summary::drift::{self, jensen_shannon_of};
use driftwatch_core::summary::{CategoricalSummary, NumericSummary, KLL_PMF_ERROR, KLL_RANK_ERROR};
use serde_json::Value;

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

fn numeric(xs: &[f64]) -> NumericSummary {
    let mut s = NumericSummary::new();
    for &x in xs {
        s.update(x);
    }
    s
}

fn close(ours: f64, theirs: f64, tol: f64, what: &str) {
    assert!(
        (ours - theirs).abs() <= tol,
        "{what}: ours {ours} vs scipy {theirs} (tolerance {tol})"
    );
}

#[test]
fn numeric_statistics_agree_with_scipy() {
    let doc = fixture();
    let cases = doc["numeric"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (rx, cx) = (floats(&case["reference"]), floats(&case["current"]));
        let (r, c) = (numeric(&rx), numeric(&cx));
        let exact =
            !r.sketch().unwrap().is_estimation_mode() && !c.sketch().unwrap().is_estimation_mode();
        assert_eq!(exact, name.starts_with("small"), "{name}: sketch mode");

        let ks = drift::ks(&r, &c).unwrap();
        let w = drift::wasserstein(&r, &c).unwrap();
        let psi = drift::psi(&r, &c).unwrap();
        let js = drift::jensen_shannon(&r, &c).unwrap();
        let (rb, cb) = drift::decile_bins(&r, &c).unwrap();
        let (srb, scb) = (
            floats(&case["reference_bins"]),
            floats(&case["current_bins"]),
        );
        assert_eq!(rb.len(), srb.len(), "{name}: bin count");

        // Our formulas on scipy's exact bins reproduce scipy's PSI and JS.
        close(drift::psi_of(&srb, &scb), f(case, "psi"), 1e-9, name);
        close(
            jensen_shannon_of(&srb, &scb),
            f(case, "jensen_shannon"),
            1e-9,
            name,
        );

        if exact {
            let tol = 1e-9;
            close(ks.statistic, f(case, "ks_statistic"), tol, name);
            close(ks.p_value.unwrap(), f(case, "ks_pvalue"), tol, name);
            close(w.statistic, f(case, "wasserstein_normed"), tol, name);
            close(psi.statistic, f(case, "psi"), tol, name);
            close(js.statistic, f(case, "jensen_shannon"), tol, name);
            continue;
        }

        let eps = KLL_RANK_ERROR;
        let d = f(case, "ks_statistic");
        close(ks.statistic, d, 2.0 * eps, name);
        let n_eff = {
            let (n, m) = (rx.len() as f64, cx.len() as f64);
            n * m / (n + m)
        };
        let p = ks.p_value.unwrap();
        let p_lo = drift::kolmogorov_sf(n_eff.sqrt() * (d + 2.0 * eps));
        let p_hi = drift::kolmogorov_sf(n_eff.sqrt() * (d - 2.0 * eps).max(0.0));
        assert!(
            p_lo <= p && p <= p_hi,
            "{name}: p {p} not in [{p_lo}, {p_hi}]"
        );

        let lo = rx.iter().chain(&cx).copied().fold(f64::INFINITY, f64::min);
        let hi = rx
            .iter()
            .chain(&cx)
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        let w_tol = 2.0 * eps * (hi - lo) / r.std_dev().unwrap();
        close(w.statistic, f(case, "wasserstein_normed"), w_tol, name);

        let delta = KLL_PMF_ERROR;
        for (i, (ours, theirs)) in rb.iter().zip(&srb).chain(cb.iter().zip(&scb)).enumerate() {
            close(*ours, *theirs, delta, &format!("{name}: bin {i}"));
        }
        let js_tol = jensen_shannon_of(&rb, &srb) + jensen_shannon_of(&cb, &scb) + 1e-12;
        close(js.statistic, f(case, "jensen_shannon"), js_tol, name);

        let psi_tol: f64 = srb
            .iter()
            .zip(&scb)
            .map(|(&r, &c)| {
                let m = (r.min(c) - delta).max(drift::PSI_EPSILON);
                2.0 * delta * ((c / r).ln().abs() + (c - r).abs() / m) + 4.0 * delta * delta / m
            })
            .sum();
        close(psi.statistic, f(case, "psi"), psi_tol, name);
    }
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
    let doc = fixture();
    let cases = doc["categorical"].as_array().unwrap();
    assert!(cases.len() >= 2);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (r, c) = (
            categorical(&case["reference"]),
            categorical(&case["current"]),
        );
        let chi = drift::chi_square(&r, &c).unwrap();
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
        close(
            drift::jensen_shannon_categorical(&r, &c).unwrap().statistic,
            f(case, "jensen_shannon"),
            1e-9,
            name,
        );
        close(
            drift::hellinger(&r, &c).unwrap().statistic,
            f(case, "hellinger"),
            1e-9,
            name,
        );
    }
}
