//! The HTML form of a backtest report: one self-contained page (inline style and SVG, nothing
//! fetched). Per model: the figures of every policy, then the accuracy each policy would have
//! had over time, its retrains (triangles at the top) and its monitor's drift events (circles
//! at the bottom), against the SLO and the reference accuracy.

use std::fmt::Write;

use driftwatch_core::backtest::{BacktestReport, ModelReport};

use super::render::{decay_lines, duration, time};
use driftwatch_worker::chart::{self, escape, TimeSeries};

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222;max-width:60em}\
table{border-collapse:collapse}th,td{padding:.25em .8em;border-bottom:1px solid #ddd;\
text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}\
section{margin-top:2em}h2{font-size:1.1em}.meta{color:#666}.key{display:inline-block;\
width:.8em;height:.8em;margin-right:.4em}";

/// Policy colours (Paul Tol's bright scheme, safe for the common colour blindnesses).
const COLORS: [&str; 7] = [
    "#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb",
];

fn color(i: usize) -> &'static str {
    COLORS[i % COLORS.len()]
}

fn model_section(out: &mut String, m: &ModelReport) {
    let _ = write!(
        out,
        "<section><h2>{id}</h2><p class=\"meta\">{from} → {to}; reference accuracy {r:.1} %, \
         SLO {slo:.1} %; a retrain costs {c}, an accuracy-hour {ca}; accuracy in steps of {step}.</p>",
        id = escape(&m.model_id),
        from = time(m.start),
        to = time(m.end),
        r = m.reference_accuracy * 100.0,
        slo = m.slo_accuracy * 100.0,
        c = m.retrain_cost,
        ca = m.accuracy_hour_cost,
        step = duration(m.step_ms)
    );
    for line in decay_lines(m) {
        let _ = write!(out, "<p>{}</p>", escape(&line));
    }
    out.push_str(
        "<table><tr><th>policy</th><th>retrains</th><th>hours below SLO</th>\
         <th>accuracy-hours lost</th><th>cost</th><th>drift events</th></tr>",
    );
    for (i, p) in m.policies.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td><span class=\"key\" style=\"background:{c}\"></span>{n}</td>\
             <td class=\"n\">{r}</td><td class=\"n\">{h:.1}</td><td class=\"n\">{l:.3}</td>\
             <td class=\"n\">{cost:.3}</td><td class=\"n\">{d}</td></tr>",
            c = color(i),
            n = escape(&p.name),
            r = p.retrains.len(),
            h = p.hours_below_slo,
            l = p.accuracy_hours_lost,
            cost = p.cost,
            d = p.drift_events.len()
        );
    }
    out.push_str("</table>");
    let points: Vec<Vec<(i64, f64)>> = m
        .policies
        .iter()
        .map(|p| {
            p.timeline
                .iter()
                .map(|s| (s.start + m.step_ms / 2, s.accuracy))
                .collect()
        })
        .collect();
    let marks: Vec<Vec<(i64, String)>> = m
        .policies
        .iter()
        .map(|p| {
            p.retrains
                .iter()
                .map(|&t| (t, format!("{}: retrain at {}", p.name, time(t))))
                .collect()
        })
        .collect();
    let dots: Vec<Vec<(i64, String)>> = m
        .policies
        .iter()
        .map(|p| {
            p.drift_events
                .iter()
                .map(|d| {
                    let what = match &d.feature {
                        Some(f) => format!("{} on {f}", d.detector),
                        None => d.detector.clone(),
                    };
                    (
                        d.at,
                        format!(
                            "{}: {what} DRIFT at {} ({})",
                            p.name,
                            time(d.at),
                            d.model_version
                        ),
                    )
                })
                .collect()
        })
        .collect();
    let series: Vec<TimeSeries<'_>> = m
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| TimeSeries {
            name: &p.name,
            color: color(i),
            points: &points[i],
            marks: &marks[i],
            dots: &dots[i],
        })
        .collect();
    let lowest = points
        .iter()
        .flatten()
        .map(|(_, v)| *v)
        .chain([m.slo_accuracy])
        .fold(1.0f64, f64::min);
    // The y axis from a round tenth below everything shown, to 1.
    let y0 = ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let chart = chart::timeline(
        &format!("{}: accuracy per policy", m.model_id),
        (m.start, m.end),
        (y0, 1.0),
        &series,
        &[(m.slo_accuracy, "SLO"), (m.reference_accuracy, "reference")],
        m.step_ms + m.step_ms / 2,
        true,
    );
    out.push_str(&chart);
    out.push_str("</section>");
}

/// The page.
pub fn page(r: &BacktestReport, predictions: &str, labels: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>driftwatch backtest</title><style>{STYLE}</style></head><body>\
         <h1>Backtest</h1><p class=\"meta\">predictions {p}, ground truth {l}; {n} predictions, \
         {nl} labels, {m} matched, {rej} rejected. A retrain goes live after the training delay \
         and is then as accurate as the model was at its start (the reference), decaying from \
         there as the history does.</p>",
        p = escape(predictions),
        l = escape(labels),
        n = r.inputs.predictions,
        nl = r.inputs.labels,
        m = r.inputs.matched,
        rej = r.rejected
    );
    for m in &r.models {
        model_section(&mut out, m);
    }
    if !r.skipped_models.is_empty() {
        let _ = write!(
            out,
            "<p class=\"meta\">Not simulated (no classification outcomes): {}</p>",
            escape(&r.skipped_models.join(", "))
        );
    }
    out.push_str("</body></html>\n");
    out
}
