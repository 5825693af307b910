//! Unit tests of the Prometheus rendering, beside it, and the sample parser other modules'
//! tests use.

use hdrhistogram::Histogram;

use super::*;

/// One parsed sample line: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A small parser of the text format (no escapes inside label values needed here except
/// `\"` and `\\`), independent of the renderer.
pub(crate) fn parse(text: &str) -> (Vec<Sample>, BTreeMap<String, String>) {
    let mut samples = Vec::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (n, t) = rest.split_once(' ').unwrap();
            types.insert(n.to_string(), t.to_string());
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((n, rest)) => {
                let body = rest.strip_suffix('}').unwrap();
                let mut labels = BTreeMap::new();
                let mut chars = body.chars().peekable();
                while chars.peek().is_some() {
                    let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    assert_eq!(chars.next(), Some('"'));
                    let mut val = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => val.push(chars.next().unwrap()),
                            '"' => break,
                            c => val.push(c),
                        }
                    }
                    if chars.peek() == Some(&',') {
                        chars.next();
                    }
                    labels.insert(key, val);
                }
                (n.to_string(), labels)
            }
        };
        samples.push(Sample {
            name,
            labels,
            value: value.parse().unwrap(),
        });
    }
    (samples, types)
}

fn find<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn counters(seed: u64) -> JoinCounters {
    JoinCounters {
        predictions: 10 * seed,
        labels: 9 * seed,
        matched: 7 * seed,
        expired_unlabeled: seed,
        orphan_labels: 2 * seed,
        duplicate_predictions: 3,
        duplicate_labels: 4,
        late_labels: 5,
        dead_lettered: 6,
        received_predictions: 9 * seed,
        ..JoinCounters::default()
    }
}

pub(crate) fn sample_status() -> WorkerStatus {
    let mut s = WorkerStatus {
        consumer_group: "driftwatch-join".into(),
        ..WorkerStatus::default()
    };
    s.join.insert(("churn".into(), "v1".into()), counters(1));
    s.join
        .insert(("fraud \"x\"".into(), "2024-01".into()), counters(3));
    s.join_buffers.insert(
        0,
        JoinBufferGauge {
            entries: 12,
            oldest_pending_age_seconds: 3.5,
        },
    );
    s.consumer_lag.insert(("predictions".into(), 0), 42);
    s.consumer_lag.insert(("ground-truth".into(), 0), 7);
    s.events_in.insert("predictions".into(), 100);
    s.events_out.insert("driftwatch.model-partials".into(), 5);
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
    for micros in 1..=1000u64 {
        h.record(micros * 100).unwrap();
    }
    s.latency = Some(LatencySummary::from_micros(&h));
    let mut commits = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
    for millis in [120u64, 150, 180, 400] {
        commits.record(millis * 1000).unwrap();
    }
    s.join_commit = Some(LatencySummary::from_micros(&commits));
    s.readiness = Readiness {
        assigned: true,
        restored: false,
        producing: true,
        schema_registry: true,
    };
    let mut m = MonitorStatus::default();
    m.accuracy
        .insert(("churn".into(), "v1".into(), "1h".into()), 0.93);
    m.estimated_accuracy
        .insert(("churn".into(), "v1".into(), "1h".into()), 0.81);
    m.estimated_f1.insert(
        ("churn".into(), "v1".into(), "1h".into(), "churned".into()),
        0.64,
    );
    m.label_coverage
        .insert(("churn".into(), "v1".into(), "1h".into()), 0.5);
    m.drift_state.insert(
        ("churn".into(), "v1".into(), "adwin".into(), "age".into()),
        DriftState::Drift,
    );
    s.monitor = Some(m);
    s.restore.insert(
        "join".into(),
        crate::changelog::RestoreTotals {
            restores: 1,
            resumed: 1,
            records: 10,
            bytes: 380,
            entries: 8,
            seconds: 0.5,
        },
    );
    s.transactions
        .insert(("join".into(), "committed".into()), 3);
    let tally = driftwatch_core::join::RoutingTally {
        checked: 400,
        misrouted: 300,
        on_crc32: 300,
        unkeyed: 0,
    };
    s.misrouted.insert(
        "ground-truth".into(),
        crate::join::TopicRouting::of(tally, 0.01, 100),
    );
    let mut source = crate::sources::SourceCounts::default();
    source.counters.pairing.halves_in = 3;
    source.counters.pairing.paired = 1;
    source.counters.mapped_pairs = 1;
    source.counters.predictions = 1;
    source.pending = 1;
    s.sources.insert("iris".into(), source);
    s.join_standby = Some(crate::join::StandbyCounters {
        partitions: 2,
        records: 10,
        sealed: 1,
        handed: 1,
    });
    s
}

#[test]
fn every_series_is_rendered_with_its_labels_and_values() {
    let s = sample_status();
    let text = render(&s, &RenderOptions::default()).unwrap();
    let (samples, types) = parse(&text);
    for name in MetricName::ALL {
        assert!(
            samples.iter().any(|x| x.name == name.as_str()),
            "{} missing in\n{text}",
            name.as_str()
        );
        let want = match name.kind() {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
        };
        assert_eq!(types.get(name.as_str()).map(String::as_str), Some(want));
    }
    let lag = find(
        &samples,
        "kafka_consumergroup_lag",
        &[
            ("consumergroup", "driftwatch-join"),
            ("topic", "predictions"),
            ("partition", "0"),
        ],
    );
    assert_eq!(lag.len(), 1);
    assert_eq!(lag[0].value, 42.0);
    // The estimate beside the realized accuracy, same labels.
    let model = [("model", "churn"), ("version", "v1"), ("window", "1h")];
    let realized = find(&samples, "driftwatch_model_accuracy", &model);
    let estimated = find(&samples, "driftwatch_model_estimated_accuracy", &model);
    assert_eq!((realized.len(), estimated.len()), (1, 1));
    assert_eq!((realized[0].value, estimated[0].value), (0.93, 0.81));
    let f1 = find(
        &samples,
        "driftwatch_model_estimated_f1",
        &[
            ("model", "churn"),
            ("version", "v1"),
            ("window", "1h"),
            ("class", "churned"),
        ],
    );
    assert_eq!(f1.len(), 1);
    assert_eq!(f1[0].value, 0.64);
    // Escaped label value survives the round trip.
    for (outcome, read) in JOIN_OUTCOMES {
        let got = find(
            &samples,
            "driftwatch_join_inputs_total",
            &[
                ("model", "fraud \"x\""),
                ("version", "2024-01"),
                ("outcome", outcome),
            ],
        );
        assert_eq!(got.len(), 1, "{outcome}");
        assert_eq!(got[0].value, read(&counters(3)) as f64, "{outcome}");
    }
    let age = find(
        &samples,
        "driftwatch_join_oldest_pending_age_seconds",
        &[("partition", "0")],
    );
    assert_eq!(age[0].value, 3.5);
    let gt = [("topic", "ground-truth")];
    let misrouted = find(&samples, "driftwatch_join_misrouted_total", &gt);
    assert_eq!(misrouted[0].value, 300.0);
    let share = find(&samples, "driftwatch_join_misrouted_share", &gt);
    assert_eq!(share[0].value, 0.75);
    let not_ready = find(&samples, "driftwatch_ready", &[("condition", "restored")]);
    assert_eq!(not_ready[0].value, 0.0);
    let drift = find(&samples, "driftwatch_drift_state", &[("feature", "age")]);
    assert_eq!(drift[0].value, drift_state_value(DriftState::Drift));
    let l = s.latency.unwrap();
    let p99 = find(
        &samples,
        "driftwatch_processing_latency_seconds",
        &[("quantile", "0.99")],
    );
    assert_eq!(p99[0].value, l.p99);
    assert!(l.p50 < l.p90 && l.p90 <= l.p99 && l.p99 <= l.max);
    let count = find(&samples, "driftwatch_processing_latency_seconds_count", &[]);
    assert_eq!(count[0].value, 1000.0);
    // Commit durations are shown in seconds.
    let commit = |q: &str| {
        find(
            &samples,
            "driftwatch_join_commit_seconds",
            &[("quantile", q)],
        )[0]
        .value
    };
    assert!((commit("0.5") - 0.15).abs() < 0.001, "{text}");
    assert!((commit("1") - 0.4).abs() < 0.001, "{text}");
    let sum = find(&samples, "driftwatch_join_commit_seconds_sum", &[]);
    assert!((sum[0].value - 0.85).abs() < 0.001, "{text}");
    assert_eq!(
        find(&samples, "driftwatch_join_commit_seconds_count", &[])[0].value,
        4.0
    );
}

#[test]
fn models_beyond_the_cap_are_summed_into_other() {
    let mut s = WorkerStatus::default();
    // model-i gets volume proportional to i: the busiest ones keep their label.
    for i in 1..=5u64 {
        s.join
            .insert((format!("model-{i}"), "v".into()), counters(i));
    }
    let mut m = MonitorStatus::default();
    m.accuracy
        .insert(("model-1".into(), "v".into(), "1h".into()), 0.5);
    m.accuracy
        .insert(("model-5".into(), "v".into(), "1h".into()), 0.9);
    s.monitor = Some(m);
    let text = render(&s, &RenderOptions { max_models: 2 }).unwrap();
    let (samples, _) = parse(&text);
    let models: BTreeSet<&str> = samples
        .iter()
        .filter(|x| x.name == "driftwatch_join_inputs_total")
        .filter_map(|x| x.labels.get("model").map(String::as_str))
        .collect();
    assert_eq!(
        models,
        BTreeSet::from(["model-4", "model-5", OTHER_MODELS]),
        "{text}"
    );
    let other_matched = find(
        &samples,
        "driftwatch_join_inputs_total",
        &[("model", OTHER_MODELS), ("outcome", "matched")],
    );
    let expected: u64 = (1..=3).map(|i| counters(i).matched).sum();
    assert_eq!(other_matched[0].value, expected as f64);
    // The total over all labels is unchanged by the cap.
    let total: f64 = find(&samples, "driftwatch_join_inputs_total", &[])
        .iter()
        .map(|x| x.value)
        .sum();
    let want: u64 = s
        .join
        .values()
        .map(|c| JOIN_OUTCOMES.iter().map(|(_, r)| r(c)).sum::<u64>())
        .sum();
    assert_eq!(total, want as f64);
    // Gauges of capped models are left out, not summed.
    let acc = find(&samples, "driftwatch_model_accuracy", &[]);
    assert_eq!(acc.len(), 1);
    assert_eq!(
        acc[0].labels.get("model").map(String::as_str),
        Some("model-5")
    );
}

#[test]
fn empty_snapshot_renders_readiness_only_and_no_latency() {
    let text = render(&WorkerStatus::default(), &RenderOptions::default()).unwrap();
    let (samples, _) = parse(&text);
    assert!(
        samples.iter().all(|x| x.name == "driftwatch_ready"),
        "{text}"
    );
    assert_eq!(samples.len(), 4);
    assert!(!text.contains("driftwatch_processing_latency_seconds"));
}

#[test]
fn metric_names_are_unique_and_valid() {
    let names: BTreeSet<&str> = MetricName::ALL.iter().map(|n| n.as_str()).collect();
    assert_eq!(names.len(), MetricName::ALL.len());
    for n in names {
        assert!(n
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit()));
    }
}
