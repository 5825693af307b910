//! The latency summaries (`driftwatch_processing_latency_seconds`,
//! `driftwatch_join_commit_seconds`): percentiles from an HDR histogram, written in the text
//! format by hand because `prometheus-client` does not model summaries.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::MetricName;

/// Processing-latency percentiles, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    /// Observations.
    pub count: u64,
    /// Sum of the observations, seconds (from the histogram's mean: within its precision).
    pub sum: f64,
}

impl LatencySummary {
    /// Summarizes a histogram of latencies recorded in microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        let s = |micros: u64| micros as f64 / 1e6;
        LatencySummary {
            p50: s(h.value_at_quantile(0.5)),
            p90: s(h.value_at_quantile(0.9)),
            p99: s(h.value_at_quantile(0.99)),
            max: s(h.max()),
            count: h.len(),
            sum: h.mean() * h.len() as f64 / 1e6,
        }
    }
}

/// Writes one summary with fixed quantile labels.
pub(super) fn write_summary(
    out: &mut String,
    metric: MetricName,
    l: &LatencySummary,
) -> std::fmt::Result {
    let name = metric.as_str();
    writeln!(out, "# HELP {name} {}.", metric.help())?;
    writeln!(out, "# TYPE {name} summary")?;
    for (q, v) in [
        ("0.5", l.p50),
        ("0.9", l.p90),
        ("0.99", l.p99),
        ("1", l.max),
    ] {
        writeln!(out, "{name}{{quantile=\"{q}\"}} {v}")?;
    }
    writeln!(out, "{name}_sum {}", l.sum)?;
    writeln!(out, "{name}_count {}", l.count)
}
