//! The HTML form of a compare report: one self-contained page (inline style and SVG, nothing
//! fetched), the table first, then each column's reference and current distributions.

use std::fmt::Write;

use driftwatch_core::summary::{CategoricalSummary, NumericSummary};

use super::report::{ColumnReport, Kind, Report};
use driftwatch_worker::chart::{self, escape, Series, CURRENT_COLOR, REFERENCE_COLOR};

/// Histogram bins of a numeric chart. Few enough that a bin (≈ 4 % of the values) is not
/// swamped by the sample's error (its standard deviation ≈ 0.4 % of the values per bin at
/// k = 2048), so the bars show the distribution, not the sample's noise.
const BINS: usize = 24;
/// Categories drawn; the rest are summed into one "(other)" bar.
const TOP_CATEGORIES: usize = 20;

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:60em}\
table{border-collapse:collapse}th,td{padding:.25em .8em;border-bottom:1px solid #ddd;\
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
tr.drift td{background:#fde8ea}.verdict{font-weight:bold;margin:1em 0}\
section{margin-top:2em}h2{font-size:1.1em}.meta{color:#666}";

/// Shares of both sides in common bins between the 0.5 % and 99.5 % quantiles of both (the
/// tails are counted in the outer bins, so a far outlier does not squash the chart).
fn numeric_bins(r: &NumericSummary, c: &NumericSummary) -> Option<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let lo = r.quantile(0.005)?.min(c.quantile(0.005)?);
    let hi = r.quantile(0.995)?.max(c.quantile(0.995)?);
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 0.5, lo + 0.5)
    };
    let edges: Vec<f64> = (0..=BINS)
        .map(|i| lo + (hi - lo) * i as f64 / BINS as f64)
        .collect();
    let shares = |s: &NumericSummary| -> Vec<f64> {
        let mut out = Vec::with_capacity(BINS);
        let mut below = 0.0;
        for (i, e) in edges.iter().skip(1).enumerate() {
            let f = if i + 1 == BINS {
                1.0
            } else {
                s.rank(*e).unwrap_or(below)
            };
            out.push((f - below).max(0.0));
            below = f;
        }
        out
    };
    let (rs, cs) = (shares(r), shares(c));
    Some((edges, rs, cs))
}

/// Shares of the most frequent categories of either side, and of the rest.
fn category_shares(
    r: &CategoricalSummary,
    c: &CategoricalSummary,
) -> (Vec<String>, Vec<f64>, Vec<f64>) {
    let (ri, ci) = (r.frequent_items(), c.frequent_items());
    let share = |items: &[(String, u64)], total: u64, name: &str| {
        let n = items.iter().find(|(k, _)| k == name).map_or(0, |(_, n)| *n);
        if total > 0 {
            n as f64 / total as f64
        } else {
            0.0
        }
    };
    let mut names: Vec<String> = ri.iter().chain(&ci).map(|(k, _)| k.clone()).collect();
    names.sort();
    names.dedup();
    let weight = |n: &String| share(&ri, r.count(), n).max(share(&ci, c.count(), n));
    names.sort_by(|a, b| weight(b).total_cmp(&weight(a)).then_with(|| a.cmp(b)));
    let rest = names.len() > TOP_CATEGORIES;
    names.truncate(TOP_CATEGORIES);
    let mut rv: Vec<f64> = names.iter().map(|n| share(&ri, r.count(), n)).collect();
    let mut cv: Vec<f64> = names.iter().map(|n| share(&ci, c.count(), n)).collect();
    if rest {
        rv.push((1.0 - rv.iter().sum::<f64>()).max(0.0));
        cv.push((1.0 - cv.iter().sum::<f64>()).max(0.0));
        names.push("(other)".to_owned());
    }
    (names, rv, cv)
}

/// The chart of one column: exactly one `<svg>` element.
fn chart(col: &ColumnReport) -> String {
    let title = format!("{}: reference and current distributions", col.name);
    match col.kind {
        Kind::Numerical => {
            let bins = col
                .reference
                .numeric()
                .zip(col.current.numeric())
                .and_then(|(r, c)| numeric_bins(r, c));
            let (edges, rv, cv) = bins.unwrap_or_default();
            chart::histogram(
                &title,
                &edges,
                &[
                    Series {
                        name: "reference",
                        color: REFERENCE_COLOR,
                        values: &rv,
                    },
                    Series {
                        name: "current",
                        color: CURRENT_COLOR,
                        values: &cv,
                    },
                ],
                true,
            )
        }
        Kind::Categorical => {
            let empty = CategoricalSummary::default();
            let (names, rv, cv) = category_shares(
                col.reference.categorical().unwrap_or(&empty),
                col.current.categorical().unwrap_or(&empty),
            );
            chart::bars(
                &title,
                &names,
                &[
                    Series {
                        name: "reference",
                        color: REFERENCE_COLOR,
                        values: &rv,
                    },
                    Series {
                        name: "current",
                        color: CURRENT_COLOR,
                        values: &cv,
                    },
                ],
                true,
            )
        }
    }
}

/// The whole page.
pub fn page(report: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(
        out,
        "<title>driftwatch compare: {}</title><style>{STYLE}</style></head><body>",
        escape(&report.current.0)
    );
    let _ = write!(
        out,
        "<h1>Data drift</h1><p class=\"meta\">reference: {} ({} rows)<br>current: {} ({} \
         rows)<br>statistics and defaults of the driftwatch monitor (Evidently's)</p>",
        escape(&report.reference.0),
        report.reference.1,
        escape(&report.current.0),
        report.current.1
    );
    let _ = write!(
        out,
        "<p class=\"verdict\">{}</p><table>",
        escape(&report.verdict())
    );
    for (i, row) in report.rows().iter().enumerate() {
        let drift = i > 0 && report.columns.get(i - 1).is_some_and(|c| c.result.drifted);
        out.push_str(if drift {
            "<tr class=\"drift\">"
        } else {
            "<tr>"
        });
        for (j, cell) in row.iter().enumerate() {
            let tag = if i == 0 { "th" } else { "td" };
            let class = if i > 0 && (3..=5).contains(&j) {
                " class=\"n\""
            } else {
                ""
            };
            let cell = escape(cell);
            if i > 0 && j == 0 {
                // The name links to the column's chart.
                let _ = write!(out, "<{tag}><a href=\"#col-{i}\">{cell}</a></{tag}>");
            } else {
                let _ = write!(out, "<{tag}{class}>{cell}</{tag}>");
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
    for (i, col) in report.columns.iter().enumerate() {
        let _ = write!(
            out,
            "<section id=\"col-{}\"><h2>{} <span class=\"meta\">({}, {} {}, {})</span></h2>{}\
             </section>",
            i + 1,
            escape(&col.name),
            col.kind.as_str(),
            col.result.method.as_str(),
            super::report::number(col.result.statistic),
            if col.result.drifted {
                "drift"
            } else {
                "no drift"
            },
            chart(col)
        );
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numeric_bins_hold_all_the_mass() {
        let mut r = NumericSummary::new();
        let mut c = NumericSummary::new();
        for i in 0..1000 {
            r.update(f64::from(i));
            c.update(f64::from(i) + 500.0);
        }
        let (edges, rv, cv) = numeric_bins(&r, &c).unwrap();
        assert_eq!(edges.len(), BINS + 1);
        assert!((rv.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((cv.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // The reference lies in the lower part, the current in the upper.
        assert!(rv[..BINS / 2].iter().sum::<f64>() > 0.6);
        assert!(cv[BINS / 2..].iter().sum::<f64>() > 0.6);
    }

    #[test]
    fn category_shares_keep_the_top_and_sum_the_rest() {
        let mut r = CategoricalSummary::new();
        let mut c = CategoricalSummary::new();
        for i in 0..300 {
            r.update(&format!("k{}", i % 30));
            c.update("k0");
        }
        let (names, rv, cv) = category_shares(&r, &c);
        assert_eq!(names.len(), TOP_CATEGORIES + 1);
        assert_eq!(names[0], "k0");
        assert_eq!(names.last().unwrap(), "(other)");
        assert!((rv.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!((cv[0] - 1.0).abs() < 1e-9);
    }
}
