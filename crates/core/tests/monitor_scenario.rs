//! End-to-end scenario of the monitor with delayed labels.
//!
//! Two classifiers serve about 100 predictions a minute for 12 hours. `stable` keeps ~92 %
//! accuracy; `drifting` drops to ~70 % at hour 6. Labels arrive late: each bucket's partial
//! comes in two pieces, the quick labels one minute after the bucket ends and the rest (plus
//! the predictions that expire unlabeled, ~3 %) ten minutes after it. The monitor evaluates
//! every 5 minutes of event time with the default configuration (15 min maturity, 1 h judged
//! window, hysteresis 2/3).
//!
//! Asserted for every seed: the drifting model gets an `accuracy_drop` DRIFT event within
//! [`MAX_DELAY_MS`] of event time after the change and exactly one retrain event; nothing — no
//! WARNING or DRIFT of any detector, no retrain — is emitted for the stable model or before
//! the change. The false-alarm count over all seeds is printed (`--nocapture`).

#![allow(clippy::unwrap_used)]

use driftwatch_core::join::partial::empty_partial;
use driftwatch_core::monitor::{Monitor, MonitorConfig, MonitorOutput};
use driftwatch_core::{ConfusionCell, DriftEvent, DriftState, ModelPartial, RetrainEvent};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const MIN: i64 = 60_000;
const HOURS: i64 = 12;
const CHANGE_MS: i64 = 6 * 60 * MIN;
/// Detection bound: maturity (15 min) + enough post-change data for the 1 h window to lose
/// 5 points significantly (~15 min) + two evaluations 5 min apart + the second piece's delay,
/// with margin.
const MAX_DELAY_MS: i64 = 60 * MIN;
const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

/// Accumulates one piece of one bucket.
struct Piece {
    partial: ModelPartial,
    cells: [[u64; 3]; 3],
}

impl Piece {
    fn new(model: &str, bucket: i64, seq: u64) -> Self {
        let mut partial = empty_partial(model, "v1", bucket * MIN, MIN, 0);
        partial.sequence = seq;
        Piece {
            partial,
            cells: [[0; 3]; 3],
        }
    }

    fn outcome(&mut self, rng: &mut SmallRng, accuracy: f64, delay_ms: i64) {
        let predicted = rng.gen_range(0..3);
        let correct = rng.gen_bool(accuracy);
        let actual = if correct {
            predicted
        } else {
            (predicted + rng.gen_range(1..3)) % 3
        };
        self.cells[predicted][actual] += 1;
        let p = &mut self.partial;
        p.counters.predictions += 1;
        p.counters.labels += 1;
        p.counters.matched += 1;
        p.label_delay_sum_ms += delay_ms;
        let score: f64 = if correct {
            rng.gen_range(0.6..0.99)
        } else {
            rng.gen_range(0.4..0.9)
        };
        p.log_loss_sum += if correct {
            -score.ln()
        } else {
            -(1.0 - score).ln()
        };
        let target = if correct { 1.0 } else { 0.0 };
        p.brier_sum += (score - target) * (score - target);
        p.scored += 1;
    }

    fn finish(mut self) -> ModelPartial {
        for (i, row) in self.cells.iter().enumerate() {
            for (j, &n) in row.iter().enumerate() {
                if n > 0 {
                    self.partial.confusion.push(ConfusionCell {
                        predicted: CLASSES[i].into(),
                        actual: CLASSES[j].into(),
                        count: n,
                    });
                }
            }
        }
        self.partial
    }
}

/// The two pieces of one bucket: (emit at, partial).
fn bucket_pieces(
    rng: &mut SmallRng,
    model: &str,
    bucket: i64,
    accuracy: f64,
    seq: &mut u64,
) -> [(i64, ModelPartial); 2] {
    let mut quick = Piece::new(model, bucket, *seq);
    let mut slow = Piece::new(model, bucket, *seq + 1);
    *seq += 2;
    let n = rng.gen_range(80..=120);
    for _ in 0..n {
        if rng.gen_bool(0.03) {
            // Expires unlabeled: resolved (a prediction), never matched.
            slow.partial.counters.predictions += 1;
            slow.partial.counters.expired_unlabeled += 1;
        } else if rng.gen_bool(0.6) {
            let delay = rng.gen_range(1_000..MIN);
            quick.outcome(rng, accuracy, delay);
        } else {
            let delay = rng.gen_range(MIN..10 * MIN);
            slow.outcome(rng, accuracy, delay);
        }
    }
    let end = (bucket + 1) * MIN;
    [(end + MIN, quick.finish()), (end + 10 * MIN, slow.finish())]
}

struct Run {
    drift_events: Vec<DriftEvent>,
    retrain_events: Vec<RetrainEvent>,
}

fn run(seed: u64) -> Run {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut monitor = Monitor::new(MonitorConfig::default()).unwrap();
    let minutes = HOURS * 60;
    // Pieces by emission minute; each minute's pieces go in model/bucket order.
    let mut due: Vec<Vec<ModelPartial>> = vec![Vec::new(); minutes as usize + 12];
    let mut seqs = [0u64; 2];
    for bucket in 0..minutes {
        for (k, model) in ["drifting", "stable"].into_iter().enumerate() {
            let drifted = model == "drifting" && bucket * MIN >= CHANGE_MS;
            let accuracy = if drifted { 0.70 } else { 0.92 };
            for (at, p) in bucket_pieces(&mut rng, model, bucket, accuracy, &mut seqs[k]) {
                due[(at / MIN) as usize].push(p);
            }
        }
    }
    let mut out = MonitorOutput::default();
    for (minute, pieces) in due.iter().enumerate() {
        for p in pieces {
            monitor.ingest(p).unwrap();
        }
        let now = minute as i64 * MIN;
        if minute % 5 == 0 {
            let o = monitor.evaluate(now);
            out.drift_events.extend(o.drift_events);
            out.retrain_events.extend(o.retrain_events);
        }
    }
    Run {
        drift_events: out.drift_events,
        retrain_events: out.retrain_events,
    }
}

#[test]
fn drifting_model_is_caught_and_stable_one_is_left_alone() {
    let seeds = [1u64, 2, 3, 4, 5, 6, 7, 8];
    let mut false_alarms = 0usize;
    let mut delays = Vec::new();
    for seed in seeds {
        let r = run(seed);
        let alarms: Vec<&DriftEvent> = r
            .drift_events
            .iter()
            .filter(|e| e.model_id == "stable" || e.detected_at < CHANGE_MS)
            .collect();
        false_alarms += alarms.len();
        assert!(alarms.is_empty(), "seed {seed}: false alarms {alarms:#?}");
        assert!(
            r.retrain_events.iter().all(|e| e.model_id == "drifting"),
            "seed {seed}: {:#?}",
            r.retrain_events
        );
        let drift = r
            .drift_events
            .iter()
            .find(|e| {
                e.model_id == "drifting"
                    && e.detector == "accuracy_drop"
                    && e.state == DriftState::Drift
            })
            .unwrap_or_else(|| panic!("seed {seed}: no drift event: {:#?}", r.drift_events));
        let delay = drift.detected_at - CHANGE_MS;
        assert!(
            (0..=MAX_DELAY_MS).contains(&delay),
            "seed {seed}: detected {delay} ms after the change"
        );
        delays.push(delay / MIN);
        assert!(
            drift.value < drift.threshold && drift.baseline_samples >= 1000,
            "{drift:?}"
        );
        assert_eq!(r.retrain_events.len(), 1, "seed {seed}");
        let retrain = &r.retrain_events[0];
        assert!(retrain.drift_event_ids.contains(&drift.event_id));
        // The suggested range starts near the change, not at the start of time.
        assert!(
            (CHANGE_MS - 60 * MIN..=retrain.train_to).contains(&retrain.train_from),
            "seed {seed}: train_from {} (change {CHANGE_MS})",
            retrain.train_from
        );
        let other_detectors: Vec<(&str, i64)> = r
            .drift_events
            .iter()
            .filter(|e| e.state == DriftState::Drift && e.detector != "accuracy_drop")
            .map(|e| (e.detector.as_str(), (e.detected_at - CHANGE_MS) / MIN))
            .collect();
        println!(
            "seed {seed}: accuracy_drop DRIFT {} min after the change; \
             other detectors in DRIFT (min after): {other_detectors:?}; retrain events: {}",
            delay / MIN,
            r.retrain_events.len()
        );
    }
    println!(
        "{} seeds, false alarms: {false_alarms}, detection delays (min): {delays:?}",
        seeds.len()
    );
}

#[test]
fn replay_gives_identical_events() {
    let a = run(7);
    let b = run(7);
    assert_eq!(a.drift_events, b.drift_events);
    assert_eq!(a.retrain_events, b.retrain_events);
}
