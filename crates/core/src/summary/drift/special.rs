//! Special functions and null distributions of the drift tests: the regularized incomplete
//! gamma function (χ² tail and quantile, and the gamma approximation of the Wasserstein null),
//! the Kolmogorov distribution, and the two-sample Kolmogorov–Smirnov p-value as
//! `scipy.stats.ks_2samp(method="auto")` computes it.
//!
//! Hand-written rather than taken from `statrs`: four functions, each checked against scipy in
//! `tests/summary_scipy.rs` and against closed forms below, do not justify a dependency with
//! its own linear-algebra tree.

/// ln Γ(x) for x > 0 (Lanczos, g = 7, n = 9; ~15 significant digits).
pub(crate) fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1−x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Regularized upper incomplete gamma function Q(a, x) = Γ(a, x) / Γ(a), a > 0, x ≥ 0.
pub fn gamma_q(a: f64, x: f64) -> f64 {
    if x.is_nan() || a.is_nan() || a <= 0.0 {
        return f64::NAN;
    }
    if x <= 0.0 {
        return 1.0;
    }
    if x.is_infinite() {
        return 0.0;
    }
    let log_prefix = a * x.ln() - x - ln_gamma(a);
    if x < a + 1.0 {
        // Series for P(a, x): Σ x^n / (a (a+1) … (a+n)).
        let mut term = 1.0 / a;
        let mut sum = term;
        let mut ap = a;
        for _ in 0..1000 {
            ap += 1.0;
            term *= x / ap;
            sum += term;
            if term.abs() < sum.abs() * 1e-16 {
                break;
            }
        }
        (1.0 - sum * log_prefix.exp()).clamp(0.0, 1.0)
    } else {
        // Continued fraction for Q(a, x), modified Lentz.
        const TINY: f64 = 1e-300;
        let mut b = x + 1.0 - a;
        let mut c = 1.0 / TINY;
        let mut d = 1.0 / b;
        let mut h = d;
        for i in 1..1000 {
            let an = -(i as f64) * (i as f64 - a);
            b += 2.0;
            d = an * d + b;
            if d.abs() < TINY {
                d = TINY;
            }
            c = b + an / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            let delta = d * c;
            h *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        (log_prefix.exp() * h).clamp(0.0, 1.0)
    }
}

/// The x with Q(a, x) = `p` (0 < p < 1), by bisection on a bracket that grows until it holds
/// the root: 200 halvings reach f64 resolution, and monotonicity makes it robust where Newton
/// steps on the series/fraction switch are not.
pub fn gamma_q_inv(a: f64, p: f64) -> f64 {
    if !(p > 0.0 && p < 1.0 && a > 0.0) {
        return f64::NAN;
    }
    let (mut lo, mut hi) = (0.0, a.max(1.0));
    while gamma_q(a, hi) > p {
        lo = hi;
        hi *= 2.0;
        if hi > 1e300 {
            return f64::INFINITY;
        }
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if gamma_q(a, mid) > p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= hi * 1e-15 {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// Upper tail of χ² with `dof` degrees of freedom.
pub fn chi2_sf(x: f64, dof: f64) -> f64 {
    gamma_q(dof / 2.0, x / 2.0)
}

/// The (1 − `alpha`) quantile of χ² with `dof` degrees of freedom.
pub fn chi2_isf(alpha: f64, dof: f64) -> f64 {
    2.0 * gamma_q_inv(dof / 2.0, alpha)
}

/// Survival function of the Kolmogorov distribution, P(K > z).
pub fn kolmogorov_sf(z: f64) -> f64 {
    if z.is_nan() || z <= 0.0 {
        return 1.0;
    }
    if z < 1.18 {
        // P(K ≤ z) = √(2π)/z · Σ_{j≥1} exp(−(2j−1)² π² / (8 z²)); converges fast for small z.
        let k = -std::f64::consts::PI * std::f64::consts::PI / (8.0 * z * z);
        let s: f64 = (1..=20)
            .map(|j| {
                let o = f64::from(2 * j - 1);
                (o * o * k).exp()
            })
            .sum();
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / z * s).clamp(0.0, 1.0)
    } else {
        // P(K > z) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² z²).
        let s: f64 = (1..=100)
            .map(|j| {
                let j = f64::from(j);
                let sign = if j as u32 % 2 == 1 { 1.0 } else { -1.0 };
                sign * (-2.0 * j * j * z * z).exp()
            })
            .sum();
        (2.0 * s).clamp(0.0, 1.0)
    }
}

/// Largest sample for which [`ks_2samp_p`] uses the exact distribution (scipy's
/// `MAX_AUTO_N`).
pub const KS_EXACT_MAX_N: u64 = 10_000;

/// Two-sided p-value of the two-sample KS statistic `d` for samples of `n` and `m` values,
/// as `scipy.stats.ks_2samp(method="auto")`:
/// - `max(n, m) ≤ 10 000`: the exact null distribution. As scipy, `d` is first rounded to the
///   nearest multiple of 1 / lcm(n, m) (the values D can take), then P(D ≥ d) is one minus
///   the share of the lattice paths from (0, 0) to (n, m) that stay strictly inside
///   |i/n − j/m| < d (Hodges 1958), counted row by row as probabilities (each cell divided by
///   C(i + j, i), so nothing overflows) over the band only: O(n · m · d) steps;
/// - otherwise the one-sample Kolmogorov distribution at n_e = round(n m / (n + m)). scipy
///   evaluates `kstwo.sf(d, n_e)` exactly; here it is Stephens' finite-n correction of the
///   limit, P(K > (√n_e + 0.12 + 0.11/√n_e) d), whose difference from scipy the fixtures
///   bound (n_e ≥ 99 there; it is below 10⁻³ absolute, far under the 0.05 decision).
pub fn ks_2samp_p(d: f64, n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 || d.is_nan() || d <= 0.0 {
        return 1.0;
    }
    if d >= 1.0 && n.max(m) > KS_EXACT_MAX_N {
        // Disjoint samples: the tail of the limit is below f64 resolution anyway.
        return 0.0;
    }
    if n.max(m) <= KS_EXACT_MAX_N {
        return ks_exact_p(d, n, m);
    }
    let ne = ((n as f64) * (m as f64) / (n + m) as f64).round().max(1.0);
    kstwo_sf(d, ne)
}

/// P(D_n ≥ d) of the one-sample KS statistic over `n` values, by Stephens' correction of the
/// Kolmogorov limit: P(K > (√n + 0.12 + 0.11/√n) d). scipy's `kstwo.sf` is exact; the
/// fixtures bound the difference (n ≥ 99, p from 0.5 down to 0.001).
pub fn kstwo_sf(d: f64, n: f64) -> f64 {
    let s = n.max(1.0).sqrt();
    kolmogorov_sf((s + 0.12 + 0.11 / s) * d)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D ≥ d) under H0, exactly (see [`ks_2samp_p`]).
fn ks_exact_p(d: f64, n: u64, m: u64) -> f64 {
    let g = gcd(n, m);
    // lcm ≤ 10⁸ here; h·g compares with i·m − j·n, both below 2·10⁸: no overflow in i128.
    let lcm = (n / g) as f64 * m as f64;
    let h = (d * lcm).round();
    if h <= 0.0 {
        return 1.0;
    }
    let hg = h as i128 * i128::from(g);
    let (ni, mi) = (i128::from(n), i128::from(m));
    // Band of row i: |i m − j n| < h g, i.e. j in ((i m − h g) / n, (i m + h g) / n).
    let band = |i: i128| {
        let lo = ((i * mi - hg).div_euclid(ni) + 1).max(0);
        let hi = (i * mi + hg - 1).div_euclid(ni).min(mi);
        (lo, hi)
    };
    let mut row = vec![0.0f64; m as usize + 1];
    // Row 0: u(0, j) = u(0, j − 1) = 1 while inside.
    let (_, hi0) = band(0);
    for cell in row.iter_mut().take(hi0.max(0) as usize + 1) {
        *cell = 1.0;
    }
    let mut prev_lo = 0usize;
    for i in 1..=ni {
        let (lo, hi) = band(i);
        if lo > hi {
            return 1.0;
        }
        let (lo, hi) = (lo as usize, hi as usize);
        // The band moves right: cells left of it were inside on the row before.
        for cell in &mut row[prev_lo..lo] {
            *cell = 0.0;
        }
        prev_lo = lo;
        let fi = i as f64;
        let mut left = 0.0;
        for (j, cell) in row.iter_mut().enumerate().take(hi + 1).skip(lo) {
            let fj = j as f64;
            // Paths into (i, j) come from (i − 1, j) and (i, j − 1); as shares of C(i+j, i)
            // those weigh i / (i + j) and j / (i + j).
            let v = (fi * *cell + fj * left) / (fi + fj);
            *cell = v;
            left = v;
        }
    }
    (1.0 - row[m as usize]).clamp(0.0, 1.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gamma_q_known_identities() {
        // Q(1, x) = e^{−x}; Q(1/2, x) = erfc(√x), erfc(1) = 0.157299207050285.
        for x in [0.1f64, 1.0, 2.5, 10.0] {
            assert!((gamma_q(1.0, x) - (-x).exp()).abs() < 1e-13, "{x}");
        }
        assert!((gamma_q(0.5, 1.0) - 0.157_299_207_050_285).abs() < 1e-12);
        assert_eq!(gamma_q(3.0, 0.0), 1.0);
        // Q(k, x) for integer k = e^{−x} Σ_{i<k} x^i / i!.
        let x: f64 = 4.2;
        let expect = (-x).exp() * (1.0 + x + x * x / 2.0 + x.powi(3) / 6.0);
        assert!((gamma_q(4.0, x) - expect).abs() < 1e-13);
    }

    #[test]
    fn chi2_quantiles_invert_the_tail() {
        // Classic table values: χ²₁ 0.95 = 3.841459, χ²₉ 0.95 = 16.918978, χ²₄ 0.999 = 18.46683.
        assert!((chi2_isf(0.05, 1.0) - 3.841_458_820_694_124).abs() < 1e-9);
        assert!((chi2_isf(0.05, 9.0) - 16.918_977_604_620_45).abs() < 1e-8);
        assert!((chi2_isf(0.001, 4.0) - 18.466_826_952_903_15).abs() < 1e-8);
        for (a, p) in [(0.3, 0.2), (5.0, 1e-6), (40.0, 0.9)] {
            let x = gamma_q_inv(a, p);
            assert!((gamma_q(a, x) / p - 1.0).abs() < 1e-9, "{a} {p}");
        }
    }

    #[test]
    fn kolmogorov_sf_branches_agree_and_are_monotone() {
        let mut last = 1.0;
        for i in 1..300 {
            let z = f64::from(i) * 0.01;
            let p = kolmogorov_sf(z);
            assert!(p <= last + 1e-12, "not monotone at {z}");
            last = p;
        }
        assert!((kolmogorov_sf(1.18 - 1e-9) - kolmogorov_sf(1.18)).abs() < 1e-9);
        assert!((kolmogorov_sf(1.358_1) - 0.05).abs() < 1e-4);
    }

    #[test]
    fn exact_ks_matches_closed_forms() {
        // n = m: P(D ≥ h/n) = 2 Σ_k (−1)^{k−1} C(2n, n − k h) / C(2n, n) (Gnedenko).
        let binom =
            |a: u64, b: u64| -> f64 { (0..b).map(|i| (a - i) as f64 / (b - i) as f64).product() };
        let n = 20u64;
        for h in 1..=n {
            let mut s = 0.0;
            let mut k = 1;
            while k * h <= n {
                let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
                s += sign * binom(2 * n, n - k * h);
                k += 1;
            }
            let expect = (2.0 * s / binom(2 * n, n)).min(1.0);
            let p = ks_2samp_p(h as f64 / n as f64, n, n);
            assert!((p - expect).abs() < 1e-12, "h {h}: {p} vs {expect}");
        }
        // Disjoint samples of 3 and 4: only 2 of the C(7, 3) = 35 paths reach D = 1.
        assert!((ks_2samp_p(1.0, 3, 4) - 2.0 / 35.0).abs() < 1e-15);
        assert_eq!(ks_2samp_p(0.0, 3, 4), 1.0);
    }

    #[test]
    fn asymptotic_ks_is_continuous_with_the_exact_one() {
        // Just above scipy's switch the finite-n Kolmogorov tail is close to the exact value.
        let d = 0.03;
        let exact = ks_2samp_p(d, 10_000, 5_000);
        let asym = ks_2samp_p(d, 10_001, 5_000);
        assert!((exact - asym).abs() < 2e-3, "{exact} vs {asym}");
    }
}
