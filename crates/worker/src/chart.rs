//! Small inline SVG charts, one code for every page driftwatch draws: the web console
//! ([`crate::console`]) and the self-contained HTML reports of `driftwatch compare` and
//! `driftwatch backtest`. No script, no stylesheet, no font or anything else fetched, so a
//! report stays readable offline and in a mail attachment, and the console needs no asset.
//!
//! Each function returns one `<svg>` element. Series are drawn in the order given, with a
//! legend; text is escaped. A timeline's elements carry classes and `data-` attributes
//! (`series`, `mark`, the series' name, its number of points) for styling and for tests that
//! read a rendered page.

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
                x_label(&mut out, k, x, base, &tick(*e));
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

/// A series over time for [`timeline`]: points (time in ms, value) joined by a line (broken
/// where consecutive points are more than `gap_ms` apart), with `marks` (time, tooltip)
/// drawn as a triangle at the top of the plot and a faint vertical line, and `dots` (time,
/// tooltip) as small circles along its bottom edge, all in the series' colour.
#[derive(Debug, Clone, Copy)]
pub struct TimeSeries<'a> {
    pub name: &'a str,
    pub color: &'a str,
    pub points: &'a [(i64, f64)],
    pub marks: &'a [(i64, String)],
    pub dots: &'a [(i64, String)],
}

/// A line chart over time from `x0` to `x1` (ms since the epoch), the y axis from `y0` to
/// `y1`, with horizontal dashed `guides` (value, label).
pub fn timeline(
    title: &str,
    (x0, x1): (i64, i64),
    (y0, y1): (f64, f64),
    series: &[TimeSeries<'_>],
    guides: &[(f64, &str)],
    gap_ms: i64,
    percent: bool,
) -> String {
    let mut out = String::new();
    open(&mut out, title);
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let base = HEIGHT - BOTTOM;
    let span = (x1 - x0).max(1) as f64;
    let yspan = if y1 > y0 { y1 - y0 } else { 1.0 };
    let px = |t: i64| LEFT + plot_w * ((t - x0) as f64 / span).clamp(0.0, 1.0);
    let py = |v: f64| base - plot_h * ((v - y0) / yspan).clamp(0.0, 1.0);
    let label = |v: f64| {
        if percent {
            format!("{}%", tick(v * 100.0))
        } else {
            tick(v)
        }
    };
    for i in 0..=4 {
        let v = y0 + yspan * f64::from(i) / 4.0;
        let y = py(v);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\">{l}</text>",
            x2 = WIDTH - RIGHT,
            tx = LEFT - 4.0,
            ty = y + 4.0,
            l = label(v)
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{base}\" y2=\"{base}\" stroke=\"#666\"/>",
        x2 = WIDTH - RIGHT
    );
    for k in 0..=4 {
        let t = x0 + ((x1 - x0) as f64 * k as f64 / 4.0) as i64;
        x_label(&mut out, k, px(t), base, &date_minutes(t));
    }
    for (v, name) in guides {
        let y = py(*v);
        let _ = write!(
            out,
            "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#555\" \
             stroke-dasharray=\"4 3\"/><text x=\"{tx}\" y=\"{ty:.1}\" text-anchor=\"end\" \
             fill=\"#555\">{n} {l}</text>",
            x2 = WIDTH - RIGHT,
            tx = WIDTH - RIGHT - 2.0,
            ty = y - 3.0,
            n = escape(name),
            l = label(*v)
        );
    }
    for s in series {
        let c = escape(s.color);
        let mut d = String::new();
        let mut last: Option<i64> = None;
        for &(t, v) in s.points.iter().filter(|(_, v)| v.is_finite()) {
            let cmd = if last.is_some_and(|l| t - l <= gap_ms) {
                'L'
            } else {
                'M'
            };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", px(t), py(v));
            last = Some(t);
        }
        if !d.is_empty() {
            let _ = write!(
                out,
                "<path class=\"series\" data-series=\"{n}\" data-points=\"{k}\" d=\"{}\" \
                 fill=\"none\" stroke=\"{c}\" stroke-width=\"1.5\"/>",
                d.trim_end(),
                n = escape(s.name),
                k = s.points.iter().filter(|(_, v)| v.is_finite()).count()
            );
        }
        for (t, tip) in s.marks {
            let x = px(*t);
            let _ = write!(
                out,
                "<g class=\"mark\" data-series=\"{n}\"><title>{tip}</title><line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" \
                 y2=\"{base}\" stroke=\"{c}\" stroke-opacity=\"0.35\"/><path d=\"M{a:.1},{TOP} \
                 L{b:.1},{TOP} L{x:.1},{y:.1} Z\" fill=\"{c}\"/></g>",
                tip = escape(tip),
                n = escape(s.name),
                a = x - 4.0,
                b = x + 4.0,
                y = TOP + 7.0
            );
        }
        for (t, tip) in s.dots {
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"none\" stroke=\"{c}\">\
                 <title>{tip}</title></circle>",
                x = px(*t),
                y = base - 4.0,
                tip = escape(tip)
            );
        }
    }
    let keys: Vec<Series<'_>> = series
        .iter()
        .map(|s| Series {
            name: s.name,
            color: s.color,
            values: &[],
        })
        .collect();
    legend(&mut out, &keys);
    out.push_str("</svg>");
    out
}

/// `2026-01-01 07:12` (UTC): an axis label.
pub fn date_minutes(ms: i64) -> String {
    let minutes = ms.max(0) / 60_000;
    let (days, minute_of_day) = (minutes / 1440, minutes % 1440);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        minute_of_day / 60,
        minute_of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The `k`-th of five x-axis labels (k = 0..=4) at `x`, under the axis at `base`; the outer
/// ones lean inwards so they stay inside the chart.
fn x_label(out: &mut String, k: usize, x: f64, base: f64, text: &str) {
    let anchor = match k {
        0 => "start",
        4 => "end",
        _ => "middle",
    };
    let _ = write!(
        out,
        "<text x=\"{x:.1}\" y=\"{y}\" text-anchor=\"{anchor}\">{l}</text>",
        y = base + 16.0,
        l = escape(text)
    );
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
    fn axis_dates_are_utc_calendar_minutes() {
        assert_eq!(date_minutes(0), "1970-01-01 00:00");
        assert_eq!(date_minutes(951_782_400_000 + 90_000), "2000-02-29 00:01");
        assert_eq!(date_minutes(1_795_000_900_000), "2026-11-18 11:21");
        assert_eq!(date_minutes(4_102_444_799_000), "2099-12-31 23:59");
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(1234.5), "1234");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(1.5e-7), "1.50e-7");
        assert_eq!(tick(-0.0001), "-1.00e-4");
    }

    #[test]
    fn timelines_draw_lines_marks_and_guides_without_urls() {
        let points = [(0, 0.9), (3_600_000, 0.8), (10 * 3_600_000, 0.7)];
        let marks = [(3_600_000, "retrain <1>".to_owned())];
        let dots = [(7_200_000, "drift".to_owned())];
        let s = timeline(
            "acc",
            (0, 10 * 3_600_000),
            (0.5, 1.0),
            &[TimeSeries {
                name: "configured",
                color: CURRENT_COLOR,
                points: &points,
                marks: &marks,
                dots: &dots,
            }],
            &[(0.85, "SLO")],
            3_600_000,
            true,
        );
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>"));
        assert!(s.contains("M56.0,"), "{s}");
        assert_eq!(
            s.matches(" L").count() - 2,
            1,
            "one segment, then a gap: {s}"
        );
        assert!(s.contains("retrain &lt;1&gt;") && s.contains("<circle"));
        assert!(s.contains("SLO 85%") && s.contains("1970-01-01 00:00"));
        assert!(!s.contains("http") && !s.contains("NaN"));
    }
}
