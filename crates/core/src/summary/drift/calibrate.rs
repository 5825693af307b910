//! Null distributions that know the sample sizes, the sketches' error, and multiple testing.
//!
//! # Effective sample sizes
//! A sketched CDF (or proportion) is the sample's own plus the sketch's error. Both behave as
//! noise of the same shape, so the sketch is accounted for as extra sampling noise: a sketch
//! whose error at one query has standard deviation σ adds the variance of a sample of
//! n_σ = 1 / (4σ²) values (the variance of an empirical CDF at its median is 1 / (4n)), and
//! the sample of n values *as sketched* counts as n' = 1 / (1/n + 1/n_σ) values:
//! - the numeric distinct-value sample, once it dropped values: its CDF is a ratio estimate
//!   from a random (by hash) set of distinct values weighted by their counts, whose variance
//!   at a point of CDF F is ≈ F(1 − F) / n_K with n_K Kish's effective size (Σc)² / Σc² of the
//!   kept counts; so n_σ = n_K (σ = 1 / (2 √n_K)): ≈ 2048 for continuous data, and a sample
//!   of 100 000 values counts as ≈ 2 000; exact samples (≤ 2048 distinct values) count fully.
//!
//! Categorical summaries need no such term: their counts (per category, or per hash bucket
//! beyond 1024 categories) are exact.
//!
//! Every test then uses n' and m' where it would use n and m. This is what keeps the p-value
//! of a sampled KS test honest at 10⁵ values per side, where the sample's error (≈ 1.1 %
//! standard deviation at the median) is larger than the statistic's own noise (≈ 0.3 %).
//!
//! # Distances on proportions (PSI, Jensen–Shannon, Hellinger)
//! On k bins (deciles of the reference, or categories) with proportions r and c from samples
//! of n' and m' values, and n_e = n' m' / (n' + m'), each distance is to second order a
//! multiple of Pearson's two-sample statistic X = n_e Σ (c − r)² / p̄ ~ χ²_{k−1} under H0:
//! PSI ≈ X / n_e, JS divergence (nats) ≈ X / (8 n_e), Hellinger² ≈ X / (8 n_e). So the p-value
//! is the χ²_{k−1} tail at the matching X, and the (1 − α) null quantile of the distance is the
//! χ² quantile mapped back. (Asymptotic; valid with expected counts ≥ 5 per bin, which is why
//! sparse categories are pooled and why the calibration suite checks the level at n = 100.)
//!
//! # Normed Wasserstein
//! Under H0, W₁ = ∫ |F_n − G_m| dx ≈ √(1/n' + 1/m') ∫ |B(F(x))| dx for a Brownian bridge B
//! (del Barrio, Giné, Matrán 1999). S = ∫ |B(u)| dQ(u) is evaluated on the reference's
//! quantile function Q at [`W_GRID`] points; its mean and variance are exact for that sum
//! (E|B(u)| = √(2/π) s(u), E|B(u)B(v)| = (2 s(u) s(v) / π)(√(1 − ρ²) + ρ asin ρ) with
//! s(u) = √(u(1 − u)) and ρ the bridge's correlation), and S is taken as gamma-distributed
//! with those two moments (a positive, right-skewed sum of dependent half-normals). No
//! random numbers are drawn: the same sketches give the same verdict bit for bit, and it costs
//! one pass over W_GRID² pairs (≈ 4 000 terms, a few µs).
//!
//! # Multiple features
//! [`benjamini_hochberg`] adjusts the p-values of one judgement's features.

use super::special::{chi2_isf, chi2_sf, gamma_q, gamma_q_inv};

/// Grid of the Wasserstein null's quantile function.
pub const W_GRID: usize = 64;

/// A sample of `n` values as seen through a sketch whose error at one query has standard
/// deviation `sigma` (see the module docs); `n` when `sigma` is 0.
pub fn effective_size(n: u64, sigma: f64) -> f64 {
    let n = n as f64;
    if sigma > 0.0 && n > 0.0 {
        1.0 / (1.0 / n + 4.0 * sigma * sigma)
    } else {
        n
    }
}

/// σ at the median of a sampled CDF of Kish size `n_kish` (infinite while the sample is
/// exact): 1 / (2 √n_kish), so that [`effective_size`] adds 1 / n_kish to 1 / n.
pub fn sample_sigma(n_kish: f64) -> f64 {
    if n_kish.is_finite() && n_kish > 0.0 {
        0.5 / n_kish.sqrt()
    } else {
        0.0
    }
}

/// n m / (n + m).
pub fn harmonic(n: f64, m: f64) -> f64 {
    if n <= 0.0 || m <= 0.0 {
        0.0
    } else {
        n * m / (n + m)
    }
}

/// How a distance on proportions maps to Pearson's χ² (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinnedDistance {
    /// PSI ≈ X / n_e.
    Psi,
    /// JS distance (base 2) d: d² ln 2 ≈ X / (8 n_e).
    JensenShannon,
    /// Hellinger distance h: h² ≈ X / (8 n_e).
    Hellinger,
}

impl BinnedDistance {
    fn to_chi2(self, stat: f64, n_e: f64) -> f64 {
        match self {
            BinnedDistance::Psi => n_e * stat,
            BinnedDistance::JensenShannon => 8.0 * n_e * stat * stat * std::f64::consts::LN_2,
            BinnedDistance::Hellinger => 8.0 * n_e * stat * stat,
        }
    }

    fn of_chi2(self, x: f64, n_e: f64) -> f64 {
        match self {
            BinnedDistance::Psi => x / n_e,
            BinnedDistance::JensenShannon => (x / (8.0 * n_e * std::f64::consts::LN_2)).sqrt(),
            BinnedDistance::Hellinger => (x / (8.0 * n_e)).sqrt(),
        }
    }

    /// p-value of `stat` on `bins` bins at effective size `n_e`, and the distance's
    /// (1 − `alpha`) null quantile.
    pub fn null(self, stat: f64, bins: usize, n_e: f64, alpha: f64) -> (f64, f64) {
        if bins < 2 || n_e <= 0.0 {
            return (1.0, f64::INFINITY);
        }
        let dof = (bins - 1) as f64;
        let p = chi2_sf(self.to_chi2(stat, n_e), dof);
        (p, self.of_chi2(chi2_isf(alpha, dof), n_e))
    }
}

/// Mean and variance of S = Σ |B(u_i)| ΔQ_i, u_i = (i − ½) / G, for a Brownian bridge B and
/// the quantile steps `dq` (ΔQ_i = Q(i/G) − Q((i−1)/G)).
pub fn bridge_l1_moments(dq: &[f64]) -> (f64, f64) {
    let g = dq.len();
    if g == 0 {
        return (0.0, 0.0);
    }
    let u: Vec<f64> = (0..g).map(|i| (i as f64 + 0.5) / g as f64).collect();
    let s: Vec<f64> = u.iter().map(|u| (u * (1.0 - u)).sqrt()).collect();
    let two_over_pi = 2.0 / std::f64::consts::PI;
    let mean: f64 = s
        .iter()
        .zip(dq)
        .map(|(s, d)| two_over_pi.sqrt() * s * d)
        .sum();
    let mut second = 0.0;
    for i in 0..g {
        if dq[i] == 0.0 {
            continue;
        }
        second += s[i] * s[i] * dq[i] * dq[i];
        for j in i + 1..g {
            if dq[j] == 0.0 {
                continue;
            }
            // Correlation of a Brownian bridge at u_i < u_j.
            let rho = ((u[i] * (1.0 - u[j])) / (u[j] * (1.0 - u[i]))).sqrt();
            let e = two_over_pi * s[i] * s[j] * ((1.0 - rho * rho).sqrt() + rho * rho.asin());
            second += 2.0 * e * dq[i] * dq[j];
        }
    }
    (mean, (second - mean * mean).max(0.0))
}

/// Mean and variance of S = Σᵢ wᵢ |Z(xᵢ)| for Z(x) = Σₛ Bₛ(Fₛ(x)) / √nₛ, a sum of independent
/// Brownian bridges, one per side s with CDF values `sides[s].0[i]` = Fₛ(xᵢ) at increasing
/// points xᵢ and effective size `sides[s].1`. This is the law of ∫ |(F̂_r − F_r) − (F̂_c − F_c)| dx,
/// the error two independent samples' CDFs put on a Wasserstein distance (each sample's CDF
/// error is a bridge over its own CDF), evaluated cell by cell: Cov(Z(xᵢ), Z(xⱼ)) =
/// Σₛ Fₛ(xᵢ)(1 − Fₛ(xⱼ)) / nₛ for xᵢ ≤ xⱼ, and the half-normal moments as in
/// [`bridge_l1_moments`].
pub fn bridges_l1_moments(w: &[f64], sides: &[(Vec<f64>, f64)]) -> (f64, f64) {
    let g = w.len();
    let cov = |i: usize, j: usize| -> f64 {
        sides
            .iter()
            .map(|(f, n)| f[i] * (1.0 - f[j]) / n)
            .sum::<f64>()
    };
    let sd: Vec<f64> = (0..g).map(|i| cov(i, i).max(0.0).sqrt()).collect();
    let two_over_pi = 2.0 / std::f64::consts::PI;
    let mean: f64 = (0..g).map(|i| two_over_pi.sqrt() * sd[i] * w[i]).sum();
    let mut second = 0.0;
    for i in 0..g {
        if w[i] == 0.0 || sd[i] == 0.0 {
            continue;
        }
        second += sd[i] * sd[i] * w[i] * w[i];
        for j in i + 1..g {
            if w[j] == 0.0 || sd[j] == 0.0 {
                continue;
            }
            let rho = (cov(i, j) / (sd[i] * sd[j])).clamp(-1.0, 1.0);
            let e = two_over_pi * sd[i] * sd[j] * ((1.0 - rho * rho).sqrt() + rho * rho.asin());
            second += 2.0 * e * w[i] * w[j];
        }
    }
    (mean, (second - mean * mean).max(0.0))
}

/// p-value of an observed S = `s_obs` and S's (1 − `alpha`) quantile, from a gamma law with
/// the given mean and variance.
pub fn gamma_null(s_obs: f64, mean: f64, var: f64, alpha: f64) -> (f64, f64) {
    if !(mean > 0.0 && var > 0.0) {
        // A degenerate reference (one value): any difference is drift.
        return (if s_obs > 0.0 { 0.0 } else { 1.0 }, 0.0);
    }
    let shape = mean * mean / var;
    let scale = var / mean;
    (
        gamma_q(shape, s_obs / scale),
        gamma_q_inv(shape, alpha) * scale,
    )
}

/// Benjamini–Hochberg adjusted p-values (q-values): p_adj(i) = min over ranks k ≥ rank(i)
/// of m p_(k) / k, capped at 1. A p-value is a discovery at false-discovery rate q iff its
/// adjusted value is ≤ q. NaN stays NaN and does not count among the m tests.
pub fn bh_adjusted(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let m = order.len() as f64;
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 1.0f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        running = running.min(p[i] * m / (rank + 1) as f64);
        out[i] = running.min(1.0);
    }
    out
}

/// Benjamini–Hochberg at false-discovery rate `q`: which of `p` are discoveries (step-up: the
/// largest rank k with p_(k) ≤ k q / m, and every p-value up to it).
pub fn benjamini_hochberg(p: &[f64], q: f64) -> Vec<bool> {
    bh_adjusted(p).into_iter().map(|a| a <= q).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_sizes_follow_the_sample_error() {
        assert_eq!(effective_size(1000, 0.0), 1000.0);
        let s = sample_sigma(2048.0);
        let big = effective_size(100_000, s);
        assert!(
            (big - 1.0 / (1.0 / 100_000.0 + 1.0 / 2048.0)).abs() < 1e-6,
            "{big}"
        );
        assert!(effective_size(1000, s) > 600.0);
        assert_eq!(sample_sigma(f64::INFINITY), 0.0);
    }

    #[test]
    fn bridge_moments_match_the_uniform_closed_form() {
        // For Q = identity on [0, 1]: E ∫|B| = √(2/π) · π/8 = √(π/32) ≈ 0.3133.
        let dq = vec![1.0 / 512.0; 512];
        let (mean, var) = bridge_l1_moments(&dq);
        assert!(
            (mean - (std::f64::consts::PI / 32.0).sqrt()).abs() < 1e-4,
            "{mean}"
        );
        // Var ∫|B| for the uniform: 0.0185 by simulation (20 000 bridges on 2 000 steps).
        assert!((var - 0.0185).abs() < 0.001, "{var}");
    }

    #[test]
    fn two_bridges_add_their_variances() {
        // One side with F(x) = x on a uniform grid is bridge_l1_moments' uniform case / √n.
        let g = 512;
        let w = vec![1.0 / g as f64; g];
        let f: Vec<f64> = (0..g).map(|i| (i as f64 + 0.5) / g as f64).collect();
        let (m1, v1) = bridges_l1_moments(&w, &[(f.clone(), 100.0)]);
        let (m0, v0) = bridge_l1_moments(&w);
        assert!((m1 - m0 / 10.0).abs() < 1e-9, "{m1} {m0}");
        assert!((v1 - v0 / 100.0).abs() < 1e-6, "{v1} {v0}");
        // Two sides of one distribution and size n are one side of size n / 2.
        let (m2, v2) = bridges_l1_moments(&w, &[(f.clone(), 100.0), (f.clone(), 100.0)]);
        let (m3, v3) = bridges_l1_moments(&w, &[(f, 50.0)]);
        assert!((m2 - m3).abs() < 1e-12 && (v2 - v3).abs() < 1e-12);
    }

    #[test]
    fn bh_steps_up() {
        let p = [0.001, 0.04, 0.03, 0.5, f64::NAN];
        assert_eq!(
            benjamini_hochberg(&p, 0.05),
            vec![true, false, false, false, false]
        );
        // 0.01·… : k = 3 passes 0.03 ≤ 3·0.05/5, so ranks 1..3 are discoveries.
        let p = [0.001, 0.02, 0.03, 0.5, 0.9];
        assert_eq!(
            benjamini_hochberg(&p, 0.05),
            vec![true, true, true, false, false]
        );
        assert!(benjamini_hochberg(&[], 0.05).is_empty());
        let adj = bh_adjusted(&[0.01, 0.04, 0.03]);
        assert!((adj[0] - 0.03).abs() < 1e-15 && (adj[1] - 0.04).abs() < 1e-15);
        assert!((adj[2] - 0.04).abs() < 1e-15);
    }
}
