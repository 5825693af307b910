//! Small inline SVG charts for self-contained HTML reports: no script, no stylesheet, no font
//! or anything else fetched, so a page stays readable offline and in a mail attachment.
//!
//! Each function returns one `<svg>` element. Series are drawn in the order given, with a
//! legend; text is escaped.

use std::fmt::Write;

/// One series of a chart.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub name: &'a str,
    /// A CSS colour.
    pub color: &'a str,
    pub values: &'a [f64],
}

/// Colours of a reference and a current series, distinguishable for the common colour
/// blindnesses.
pub const REFERENCE_COLOR: &str = "#4477aa";
pub const CURRENT_COLOR: &str = "#ee6677";

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
/// Room for slanted category names.
const BOTTOM: f64 = 60.0;

/// `text` escaped for XML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A tick label: short, whatever the magnitude.
pub fn tick(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{x:.2e}")
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        if s == "-0" {
            "0".to_owned()
        } else {
            s.to_owned()
        }
    }
}

/// Opens the element. No `xmlns`: inline SVG in HTML needs none, and a page without any URL
/// is easy to check for self-containment.
fn open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        "<svg viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         width=\"{WIDTH}\" height=\"{HEIGHT}\" role=\"img\" aria-label=\"{t}\" \
         font-family=\"sans-serif\" font-size=\"11\"><title>{t}</title>",
        t = escape(title)
    );
}

fn legend(out: &mut String, series: &[Series<'_>]) {
    let mut x = LEFT;
    for s in series {
        let _ = write!(
            out,
            "<rect x=\"{x}\" y=\"8\" width=\"12\" height=\"12\" fill=\"{c}\" fill-opacity=\"0.6\"/>\
             <text x=\"{tx}\" y=\"18\">{n}</text>",
            c = escape(s.color),
            tx = x + 16.0,
            n = escape(s.name)
        );
        x += 24.0 + 7.0 * s.name.chars().count() as f64;
    }
}

/// The y axis from 0 to `max` with three labels, and the x axis line.
fn axes(out: &mut String, max: f64, percent: bool) {
    let plot_h = HEIGHT - TOP - BOTTOM;
    for i in 0..=2 {
        let v = max * f64::from(i) / 2.0;
        let y = TOP + plot_h * (1.0 - f64::from(i) / 2.0);
        let label = if percent {
            format!("{}%", tick(v * 100.0))
        } else {
            tick(v)
        };
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{label}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 4.0
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y}\" y2=\"{y}\" stroke=\"#666\"/>",
        x2 = WIDTH - RIGHT,
        y = HEIGHT - BOTTOM
    );
}

/// The top of the y axis: the largest finite value rounded up to a round number, so the
/// three axis labels read like 0, 3 %, 6 %.
fn finite_max<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    let m = values
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if m > 0.0 {
        nice_ceiling(m)
    } else {
        1.0
    }
}

/// The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 times a power of ten that is ≥ `x`
/// (`x` > 0).
pub fn nice_ceiling(x: f64) -> f64 {
    let scale = 10f64.powf(x.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .into_iter()
        .map(|m| m * scale)
        .find(|&v| v >= x * (1.0 - 1e-12))
        .unwrap_or(10.0 * scale)
}

/// Overlaid histograms on shared bins: `edges` has one more element than each series'
/// `values` (proportions or counts). Each series is a filled step outline, so overlaps stay
/// visible.
pub fn histogram(title: &str, edges: &[f64], series: &[Series<'_>], percent: bool) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let bins = edges.len().saturating_sub(1);
    let max = finite_max(series.iter().flat_map(|s| s.values.iter()));
    axes(&mut out, max, percent);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let base = HEIGHT - BOTTOM;
    if bins > 0 {
        let bin_w = plot_w / bins as f64;
        for s in series {
            let mut d = format!("M{LEFT:.1},{base:.1}");
            for (i, v) in s.values.iter().take(bins).enumerate() {
                let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
                let y = base - plot_h * v / max;
                let x0 = LEFT + bin_w * i as f64;
                let _ = write!(d, " L{x0:.1},{y:.1} L{:.1},{y:.1}", x0 + bin_w);
            }
            let _ = write!(d, " L{:.1},{base:.1} Z", LEFT + bin_w * bins as f64);
            let _ = write!(
                out,
                "<path d=\"{d}\" fill=\"{c}\" fill-opacity=\"0.35\" stroke=\"{c}\" \
                 stroke-width=\"1.5\"/>",
                c = escape(s.color)
            );
        }
        // Five x labels at evenly spaced edges.
        for k in 0..=4 {
            let i = k * bins / 4;
            if let Some(e) = edges.get(i) {
                let x = LEFT + bin_w * i as f64;
                // The outer labels lean inwards so they stay inside the chart.
                let anchor = match k {
                    0 => "start",
                    4 => "end",
                    _ => "middle",
                };
                let _ = write!(
                    out,
                    "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\">{l}</text>",
                    y = base + 16.0,
                    l = escape(&tick(*e))
                );
            }
        }
    }
    legend(&mut out, series);
    out.push_str("</svg>");
    out
}

/// Grouped bars: one group per category, one bar per series.
pub fn bars(title: &str, categories: &[String], series: &[Series<'_>], percent: bool) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let max = finite_max(series.iter().flat_map(|s| s.values.iter()));
    axes(&mut out, max, percent);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let base = HEIGHT - BOTTOM;
    let groups = categories.len().max(1) as f64;
    let group_w = plot_w / groups;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    for (g, category) in categories.iter().enumerate() {
        let gx = LEFT + group_w * g as f64 + group_w * 0.1;
        for (k, s) in series.iter().enumerate() {
            let v = s.values.get(g).copied().unwrap_or(0.0);
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            let h = plot_h * v / max;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{h:.1}\" \
                 fill=\"{c}\" fill-opacity=\"0.8\"><title>{n} {cat}: {val}</title></rect>",
                x = gx + bar_w * k as f64,
                y = base - h,
                c = escape(s.color),
                n = escape(s.name),
                cat = escape(category),
                val = if percent {
                    format!("{}%", tick(v * 100.0))
                } else {
                    tick(v)
                }
            );
        }
        // Long names are cut: the full name is in each bar's tooltip. Many categories get
        // slanted labels, which do not overlap.
        let label: String = category.chars().take(12).collect();
        let (x, y) = (gx + group_w * 0.4, base + 14.0);
        if categories.len() > 8 {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"end\" \
                 transform=\"rotate(-35 {x:.1} {y})\">{l}</text>",
                l = escape(&label)
            );
        } else {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"middle\">{l}</text>",
                l = escape(&label)
            );
        }
    }
    legend(&mut out, series);
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two<'a>(a: &'a [f64], b: &'a [f64]) -> [Series<'a>; 2] {
        [
            Series {
                name: "reference",
                color: REFERENCE_COLOR,
                values: a,
            },
            Series {
                name: "current <now>",
                color: CURRENT_COLOR,
                values: b,
            },
        ]
    }

    #[test]
    fn histogram_is_one_svg_with_a_path_per_series() {
        let s = histogram(
            "x & y",
            &[0.0, 1.0, 2.0, 3.0],
            &two(&[0.2, 0.5, 0.3], &[0.1, 0.1, 0.8]),
            true,
        );
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>"));
        assert_eq!(s.matches("<svg").count(), 1);
        assert_eq!(s.matches("<path").count(), 2);
        assert!(s.contains("x &amp; y") && s.contains("current &lt;now&gt;"));
        assert!(s.contains("80%") && s.contains("40%"), "{s}");
        assert!(!s.contains("NaN"));
    }

    #[test]
    fn bars_draw_every_category_and_survive_odd_values() {
        let cats = vec!["a".to_owned(), "b\"".to_owned()];
        let s = bars("c", &cats, &two(&[0.5, f64::NAN], &[0.0]), false);
        assert_eq!(
            s.matches("<rect x=").count(),
            4 + 2,
            "4 bars and 2 legend keys"
        );
        assert!(s.contains("b&quot;"));
        assert!(!s.contains("NaN"));
        let empty = bars("none", &[], &[], true);
        assert!(empty.ends_with("</svg>"));
    }

    #[test]
    fn axis_tops_are_round() {
        assert!((nice_ceiling(0.0561) - 0.06).abs() < 1e-15);
        assert!((nice_ceiling(0.5002) - 0.6).abs() < 1e-15);
        assert!((nice_ceiling(0.5) - 0.5).abs() < 1e-15);
        assert!((nice_ceiling(7.0) - 8.0).abs() < 1e-15);
        assert!((nice_ceiling(0.011) - 0.012).abs() < 1e-15);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(1234.5), "1234");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(1.5e-7), "1.50e-7");
        assert_eq!(tick(-0.0001), "-1.00e-4");
    }
}
