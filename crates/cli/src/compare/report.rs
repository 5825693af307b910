//! The outcome of `driftwatch compare` and its text and JSON forms.

use driftwatch_core::summary::drift::DriftResult;
use driftwatch_core::summary::FeatureSummary;
use serde::Serialize;

/// Dataset drift when at least this share of the columns drifted (Evidently's default
/// `drift_share`).
pub const DATASET_DRIFT_SHARE: f64 = 0.5;

/// A column's kind, decided on the reference as the monitor decides it (majority of values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Numerical,
    Categorical,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Numerical => "numerical",
            Kind::Categorical => "categorical",
        }
    }
}

/// One compared column.
#[derive(Debug, Clone)]
pub struct ColumnReport {
    pub name: String,
    pub kind: Kind,
    pub result: DriftResult,
    /// The summaries compared, for charts.
    pub reference: FeatureSummary,
    pub current: FeatureSummary,
}

/// Every compared column and the dataset verdict.
#[derive(Debug, Clone)]
pub struct Report {
    /// File and rows.
    pub reference: (String, u64),
    pub current: (String, u64),
    pub columns: Vec<ColumnReport>,
    pub share_drifted: f64,
    pub dataset_drift: bool,
}

/// The JSON form, field order as documented.
#[derive(Serialize)]
struct JsonReport<'a> {
    features: Vec<JsonFeature<'a>>,
    share_drifted: f64,
    dataset_drift: bool,
}

#[derive(Serialize)]
struct JsonFeature<'a> {
    name: &'a str,
    kind: &'static str,
    test: &'static str,
    /// Non-finite (χ² with a category the reference never had) is written as null.
    statistic: f64,
    p_value: Option<f64>,
    threshold: f64,
    drift: bool,
}

impl Report {
    pub fn new(
        reference: (String, u64),
        current: (String, u64),
        columns: Vec<ColumnReport>,
    ) -> Self {
        let drifted = columns.iter().filter(|c| c.result.drifted).count();
        let share_drifted = if columns.is_empty() {
            0.0
        } else {
            drifted as f64 / columns.len() as f64
        };
        Report {
            reference,
            current,
            columns,
            share_drifted,
            dataset_drift: share_drifted >= DATASET_DRIFT_SHARE,
        }
    }

    pub fn drifted(&self) -> usize {
        self.columns.iter().filter(|c| c.result.drifted).count()
    }

    /// `{"features":[...],"share_drifted":..,"dataset_drift":..}` and a newline.
    pub fn json(&self) -> anyhow::Result<String> {
        let doc = JsonReport {
            features: self
                .columns
                .iter()
                .map(|c| JsonFeature {
                    name: &c.name,
                    kind: c.kind.as_str(),
                    test: c.result.method.as_str(),
                    statistic: c.result.statistic,
                    p_value: c.result.p_value,
                    threshold: c.result.threshold,
                    drift: c.result.drifted,
                })
                .collect(),
            share_drifted: self.share_drifted,
            dataset_drift: self.dataset_drift,
        };
        Ok(serde_json::to_string(&doc)? + "\n")
    }

    /// One line of verdict.
    pub fn verdict(&self) -> String {
        format!(
            "{} of {} columns drifted ({:.1} %): {} (dataset drift at ≥ {:.0} % of the columns)",
            self.drifted(),
            self.columns.len(),
            self.share_drifted * 100.0,
            if self.dataset_drift {
                "DATASET DRIFT"
            } else {
                "no dataset drift"
            },
            DATASET_DRIFT_SHARE * 100.0
        )
    }

    /// Rows of the table: header first.
    pub fn rows(&self) -> Vec<[String; 7]> {
        let mut rows = vec![[
            "column",
            "kind",
            "test",
            "statistic",
            "p-value",
            "threshold",
            "drift",
        ]
        .map(str::to_owned)];
        for c in &self.columns {
            rows.push([
                c.name.clone(),
                c.kind.as_str().to_owned(),
                c.result.method.as_str().to_owned(),
                number(c.result.statistic),
                c.result.p_value.map_or_else(|| "-".to_owned(), number),
                number(c.result.threshold),
                if c.result.drifted { "DRIFT" } else { "no" }.to_owned(),
            ]);
        }
        rows
    }

    /// An aligned text table (numbers right-aligned) with the files and the verdict.
    pub fn table(&self) -> String {
        let rows = self.rows();
        let mut widths = [0usize; 7];
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!(
            "reference: {} ({} rows)\ncurrent:   {} ({} rows)\n\n",
            self.reference.0, self.reference.1, self.current.0, self.current.1
        );
        for row in &rows {
            let mut line = String::new();
            for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
                let pad = w - cell.chars().count();
                if i > 0 {
                    line.push_str("  ");
                }
                // Columns 3 to 5 hold numbers: right-aligned.
                if (3..=5).contains(&i) {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.verdict());
        out.push('\n');
        out
    }
}

/// A statistic for people: 4 significant decimals, exponent form when tiny.
pub fn number(x: f64) -> String {
    if !x.is_finite() {
        return if x > 0.0 {
            "inf".to_owned()
        } else {
            x.to_string()
        };
    }
    if x != 0.0 && x.abs() < 1e-4 {
        format!("{x:.3e}")
    } else {
        format!("{x:.4}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use driftwatch_core::summary::drift::DriftMethod;

    fn column(name: &str, drifted: bool) -> ColumnReport {
        ColumnReport {
            name: name.to_owned(),
            kind: Kind::Numerical,
            result: DriftResult {
                method: DriftMethod::Wasserstein,
                statistic: if drifted { 0.5 } else { 0.01 },
                p_value: None,
                threshold: 0.1,
                min_effect: Some(0.1),
                alpha: 0.05,
                drifted,
            },
            reference: FeatureSummary::default(),
            current: FeatureSummary::default(),
        }
    }

    #[test]
    fn dataset_drift_at_half_the_columns() {
        let r = |cols| Report::new(("r".into(), 1), ("c".into(), 1), cols);
        assert!(r(vec![column("a", true), column("b", false)]).dataset_drift);
        let three = r(vec![
            column("a", true),
            column("b", false),
            column("c", false),
        ]);
        assert!(!three.dataset_drift);
        assert!((three.share_drifted - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn json_fields_in_order_and_table_aligned() {
        let r = Report::new(
            ("r".into(), 1),
            ("c".into(), 1),
            vec![column("long_name", true)],
        );
        assert_eq!(
            r.json().unwrap(),
            "{\"features\":[{\"name\":\"long_name\",\"kind\":\"numerical\",\"test\":\
             \"wasserstein_normed\",\"statistic\":0.5,\"p_value\":null,\"threshold\":0.1,\
             \"drift\":true}],\"share_drifted\":1.0,\"dataset_drift\":true}\n"
        );
        let t = r.table();
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[3].find("kind"), lines[4].find("numerical"));
        assert!(t.contains("DRIFT"), "{t}");
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(number(1e-7), "1.000e-7");
    }
}
