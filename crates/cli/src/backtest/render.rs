//! The table and JSON forms of a backtest report.

use std::fmt::Write;

use driftwatch_core::backtest::{BacktestReport, ModelReport};

/// Retrain times listed in the table; the JSON has them all.
const LISTED_RETRAINS: usize = 3;

/// `2026-01-01T07:12:00Z`.
pub fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `3d 4h`, `90m`: a duration in its two largest units.
pub fn duration(ms: i64) -> String {
    let secs = ms.max(0).unsigned_abs() / 1000;
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (d, h, m) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// The decay lines of a model: one per version with an estimate.
pub fn decay_lines(m: &ModelReport) -> Vec<String> {
    m.versions
        .iter()
        .filter_map(|v| {
            let per_day = v.estimated_decay_per_day?;
            if per_day <= 0.0 {
                return Some(format!(
                    "version {}: no accuracy decay measured; no retrain interval suggested",
                    v.model_version
                ));
            }
            let interval = v
                .suggested_retrain_interval_ms
                .map_or_else(|| "none (no decay)".to_owned(), duration);
            Some(format!(
                "version {}: accuracy decays {:.2} points/day; suggested retrain interval {interval}",
                v.model_version,
                per_day * 100.0
            ))
        })
        .collect()
}

/// A plain-text table per model.
pub fn table(r: &BacktestReport) -> String {
    let mut out = String::new();
    for m in &r.models {
        let _ = writeln!(
            out,
            "model {}: {} → {}, reference accuracy {:.1} %, SLO {:.1} %, retrain cost {}, \
             accuracy-hour cost {}",
            m.model_id,
            time(m.start),
            time(m.end),
            m.reference_accuracy * 100.0,
            m.slo_accuracy * 100.0,
            m.retrain_cost,
            m.accuracy_hour_cost
        );
        for line in decay_lines(m) {
            let _ = writeln!(out, "  {line}");
        }
        let width = m
            .policies
            .iter()
            .map(|p| p.name.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "  {:<width$}  {:>8}  {:>10}  {:>14}  {:>10}  first retrains",
            "policy", "retrains", "hours<SLO", "acc-hours lost", "cost"
        );
        for p in &m.policies {
            let mut first: Vec<String> = p
                .retrains
                .iter()
                .take(LISTED_RETRAINS)
                .map(|&t| time(t))
                .collect();
            if p.retrains.len() > LISTED_RETRAINS {
                first.push("…".into());
            }
            let _ = writeln!(
                out,
                "  {:<width$}  {:>8}  {:>10.1}  {:>14.3}  {:>10.3}  {}",
                p.name,
                p.retrains.len(),
                p.hours_below_slo,
                p.accuracy_hours_lost,
                p.cost,
                first.join(", ")
            );
        }
        out.push('\n');
    }
    if !r.skipped_models.is_empty() {
        let _ = writeln!(
            out,
            "not simulated (no classification outcomes): {}",
            r.skipped_models.join(", ")
        );
    }
    let c = &r.inputs;
    let _ = writeln!(
        out,
        "inputs: {} predictions, {} labels; {} matched, {} expired unlabeled, {} orphan, {} late, \
         {} duplicate; {} rejected",
        c.predictions,
        c.labels,
        c.matched,
        c.expired_unlabeled,
        c.orphan_labels,
        c.late_labels,
        c.duplicate_predictions + c.duplicate_labels,
        r.rejected
    );
    out
}

/// The JSON form: `{"models":[{"model_id":…,"policies":[{"name":…,"retrains":[…],
/// "hours_below_slo":…,"accuracy_hours_lost":…,"cost":…},…]},…],…}`.
pub fn json(r: &BacktestReport) -> anyhow::Result<String> {
    let mut s = serde_json::to_string_pretty(r)?;
    s.push('\n');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_read_well() {
        assert_eq!(time(1_767_225_600_000), "2026-01-01T00:00:00Z");
        assert_eq!(duration(90 * 60_000), "1h 30m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d 4h");
        assert_eq!(duration(2 * 86_400_000), "2d");
        assert_eq!(duration(5 * 60_000), "5m");
    }
}
