//! Intake: bytes → typed record → task. A thin adapter: the codec tells the payload's format
//! ([`PayloadFormat`]) and decodes it, the core's intake rules
//! ([`driftwatch_core::join::intake`]) accept or refuse it and type it, the partition's task
//! queues it. A refused or undecodable record is dead-lettered ([`super::dead_letter`]).
//!
//! The Avro path decodes without allocating: the prediction's features are interned and
//! staged by [`SignatureOfPredicted`] while the datum is read, and go into the bucket's
//! signature once the prediction is accepted. Only predictions that reach a task are
//! summarized (dead-lettered ones are not); a duplicate prediction is summarized like any
//! other. The JSON path decodes an owned record and summarizes it by name.
//!
//! A record of a partition that left this worker meanwhile is still checked (and
//! dead-lettered if refused) but nothing is queued: its next owner reads it again.

use std::collections::BTreeMap;
use std::time::Instant;

use driftwatch_codec::{from_json_slice, CodecError, PayloadFormat};
use driftwatch_core::join::routing::Routing;
use driftwatch_core::join::{
    label_in, prediction_in, Input, IntakeRules, LabelFields, ModelVersionId, PredictionFields,
};
use driftwatch_core::{GroundTruth, Prediction};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use super::dead_letter::{Reject, UNKNOWN};
use super::partition::{input_index, source_input, PartitionTask, REPARTITION_SOURCE};
use super::repartition::{original_input, INPUT_HEADER};
use super::schemas::{Pending, RegistrySchemas};
use super::stage::Join;
use super::stats::warn_rate_limited;
use super::stats::{record_micros, TIMED_EVERY};
use super::visitor::{
    recycle, recycle_scores, stage_into_signature, ScoreOfPredicted, SignatureOfPredicted,
};

impl Join {
    /// Decodes one message and feeds it to its task. Returns an input partition to pause when
    /// its task's queue is full.
    pub(super) fn handle_message(
        &mut self,
        msg: &BorrowedMessage<'_>,
        now: i64,
    ) -> Option<(usize, i32)> {
        // Everything logged while handling the message carries its partition.
        let _span = tracing::debug_span!("partition", partition = msg.partition()).entered();
        // One message in [`TIMED_EVERY`] is timed (see there why).
        self.meters.handled = self.meters.handled.wrapping_add(1);
        let started = (self.meters.handled % TIMED_EVERY == 0).then(Instant::now);
        if let (Some(h), Some(sent)) = (
            self.meters.input_age_ms.as_mut(),
            msg.timestamp().to_millis(),
        ) {
            h.saturating_record(u64::try_from(now - sent).unwrap_or(0));
        }
        let source = self.source_of(msg.topic());
        let partition = msg.partition();
        if let Some(registry) = &mut self.registry {
            if registry.skips(source, partition, msg.offset()) {
                // Read again once its partition's hold is released.
                return None;
            }
        }
        let processed = if source == REPARTITION_SOURCE {
            self.take_republished(msg, now)
        } else {
            let input = source_input(source);
            // Counted once the record is taken: a held record is read again.
            let routing = self.routing.check(msg.key(), partition);
            let processed = match (routing, &mut self.repartition) {
                (Routing::Misrouted { expected, .. }, Some(r)) => {
                    // Joined as its copy: only the offset moves here.
                    if let Some(t) = self.tasks.get_mut(&partition) {
                        r.stage(msg, expected);
                        self.routing.repartitioned(input);
                        t.next_offset[source] = msg.offset() + 1;
                    }
                    Processed::Taken(None)
                }
                // Account mode: processed where it was read, and announced to the join as
                // misrouted (the per-model data-quality check counts it).
                _ => {
                    let misrouted = matches!(routing, Routing::Misrouted { .. });
                    self.process_message(msg, source, input, now, misrouted)
                }
            };
            if let Processed::Taken(_) = processed {
                self.routing.count(input, msg.topic(), partition, routing);
            }
            processed
        };
        let pause = match processed {
            Processed::Taken(pause) => pause,
            Processed::Held => return Some((source, partition)),
        };
        if let Some(started) = started {
            record_micros(&mut self.meters.processing_micros, started.elapsed());
        }
        if source != REPARTITION_SOURCE {
            self.shared.count_read(source_input(source));
        }
        pause
    }

    /// A record of the repartition topic: processed as the input its header names.
    fn take_republished(&mut self, msg: &BorrowedMessage<'_>, now: i64) -> Processed {
        let t = &self.topics;
        let Some(input) = original_input(msg, &t.predictions, &t.ground_truth) else {
            warn_rate_limited(
                &mut self.meters.warnings,
                "repartition_header",
                &format!(
                    "skipped {}[{}]@{}: no {INPUT_HEADER} header naming an input",
                    msg.topic(),
                    msg.partition(),
                    msg.offset()
                ),
            );
            if let Some(t) = self.tasks.get_mut(&msg.partition()) {
                t.next_offset[REPARTITION_SOURCE] = msg.offset() + 1;
            }
            return Processed::Taken(None);
        };
        // Not counted in `events_in` again: its original was, when it was read. Only
        // misrouted records are republished, so this one came misrouted from its producer.
        self.process_message(msg, REPARTITION_SOURCE, input, now, true)
    }

    fn process_message(
        &mut self,
        msg: &BorrowedMessage<'_>,
        source: usize,
        input: Input,
        now: i64,
        misrouted: bool,
    ) -> Processed {
        let partition = msg.partition();
        let payload = msg.payload().unwrap_or(&[]);
        let received_before = self.tasks.get(&partition).map(|t| t.task.received());
        // One size limit for every encoding, before any decoding.
        let result = if payload.len() > self.max_message_bytes {
            Err(NotTaken::Reject(Reject::codec(CodecError::Oversized {
                size: payload.len(),
                limit: self.max_message_bytes,
            })))
        } else {
            match input {
                Input::Predictions => self.push_prediction(partition, payload, now),
                Input::Labels => self.push_label(partition, payload, now),
            }
        };
        match result {
            Ok(()) => {}
            Err(NotTaken::Reject(reject)) => self.dead_letter(msg, input, reject),
            Err(NotTaken::Wait(id)) => {
                if !self.tasks.contains_key(&partition) {
                    // Revoked meanwhile: its next owner reads it again.
                    return Processed::Taken(None);
                }
                if let Some(registry) = &mut self.registry {
                    registry.hold(source, input, partition, msg.offset(), id);
                }
                return Processed::Held;
            }
        }
        Processed::Taken(self.queue(msg, source, input, received_before, now, misrouted))
    }

    /// Moves the task's offsets past `msg`, marks it misrouted if it came so, polls it; an
    /// input partition to pause when its queue is full.
    fn queue(
        &mut self,
        msg: &BorrowedMessage<'_>,
        source: usize,
        input: Input,
        received_before: Option<(u64, u64)>,
        now: i64,
        misrouted: bool,
    ) -> Option<(usize, i32)> {
        let partition = msg.partition();
        let task = self.tasks.get_mut(&partition)?;
        task.next_offset[source] = msg.offset() + 1;
        if received_before.is_some_and(|before| before != task.task.received()) {
            task.queued_offsets[input_index(input)].push_back((source, msg.offset()));
            if misrouted {
                task.task.mark_misrouted(input);
            }
        }
        self.poll_one(partition, now);
        let task = self.tasks.get(&partition)?;
        let (qp, ql) = task.task.queued();
        let queued = match input {
            Input::Predictions => qp,
            Input::Labels => ql,
        };
        (queued > self.max_queued).then_some((source, partition))
    }

    fn push_prediction(
        &mut self,
        partition: i32,
        payload: &[u8],
        now: i64,
    ) -> Result<(), NotTaken> {
        if !PayloadFormat::detect(payload).is_avro() {
            return Ok(self.push_json_prediction(partition, payload, now)?);
        }
        let (decoder, datum) = match self.decoders.predictions.select(payload) {
            Ok(selected) => selected,
            Err(e) => return Err(unknown(&mut self.registry, Input::Predictions, e, now)),
        };
        let Some(t) = self.tasks.get_mut(&partition) else {
            // Revoked meanwhile: validated as usual, but nothing to summarize into.
            let mut scores = ScoreOfPredicted::default();
            let p = decoder.decode(datum, &mut scores).map_err(Reject::codec)?;
            let fields = p.fields(p.predicted_label.and_then(|l| scores.score_of(l)));
            return Ok(
                accept_prediction(&mut self.tasks, &self.rules, partition, &fields, now)
                    .map(|_| ())?,
            );
        };
        let mut visitor = SignatureOfPredicted {
            names: t.aggregator.features_mut(),
            hints: &mut t.feature_hints,
            staged: recycle(std::mem::take(&mut t.staged)),
            dropped: 0,
            scores: ScoreOfPredicted {
                scores: recycle_scores(std::mem::take(&mut t.scores)),
            },
        };
        let decoded = decoder.decode(datum, &mut visitor);
        let SignatureOfPredicted {
            staged,
            dropped,
            scores,
            ..
        } = visitor;
        t.features_dropped += dropped;
        let result = decoded.map_err(Reject::codec).and_then(|p| {
            let fields = p.fields(p.predicted_label.and_then(|l| scores.score_of(l)));
            let model = accept_prediction(&mut self.tasks, &self.rules, partition, &fields, now)?;
            if let (Some(model), Some(t)) = (model, self.tasks.get_mut(&partition)) {
                let score = p.predicted_label.and_then(|l| scores.score_f64(l));
                let sig = t.aggregator.signature_mut(model, p.timestamp);
                stage_into_signature(sig, &staged, p.predicted_label, p.predicted_value, score);
            }
            Ok(())
        });
        if let Some(t) = self.tasks.get_mut(&partition) {
            t.staged = recycle(staged);
            t.scores = recycle_scores(scores.scores);
        }
        Ok(result?)
    }

    /// The JSON form (`schemas/README.md`).
    fn push_json_prediction(
        &mut self,
        partition: i32,
        payload: &[u8],
        now: i64,
    ) -> Result<(), Reject> {
        let owned: Prediction = from_json_slice(payload).map_err(Reject::codec)?;
        let fields = PredictionFields::from(&owned);
        let model = accept_prediction(&mut self.tasks, &self.rules, partition, &fields, now)?;
        if let (Some(model), Some(t)) = (model, self.tasks.get_mut(&partition)) {
            // The JSON path is not the fast one: the owned record is summarized by name.
            if t.aggregator.record_prediction(model, &owned).is_err() {
                t.features_dropped += 1;
            }
        }
        Ok(())
    }

    fn push_label(&mut self, partition: i32, payload: &[u8], now: i64) -> Result<(), NotTaken> {
        if !PayloadFormat::detect(payload).is_avro() {
            let owned: GroundTruth = from_json_slice(payload).map_err(Reject::codec)?;
            let fields = LabelFields::from(&owned);
            return Ok(accept_label(
                &mut self.tasks,
                &self.rules,
                partition,
                &fields,
                now,
            )?);
        }
        let (decoder, datum) = match self.decoders.labels.select(payload) {
            Ok(selected) => selected,
            Err(e) => return Err(unknown(&mut self.registry, Input::Labels, e, now)),
        };
        let l = decoder.decode(datum).map_err(Reject::codec)?;
        Ok(accept_label(
            &mut self.tasks,
            &self.rules,
            partition,
            &LabelFields::from(l),
            now,
        )?)
    }
}

/// What became of one message.
enum Processed {
    /// Checked (queued or dead-lettered); maybe a (source, partition) to pause.
    Taken(Option<(usize, i32)>),
    /// Not read: its writer schema is being fetched; its partition is held at its offset.
    Held,
}

/// Why a record was not queued.
enum NotTaken {
    Reject(Reject),
    /// Its writer schema id is being fetched from the registry.
    Wait(u32),
}

impl From<Reject> for NotTaken {
    fn from(r: Reject) -> Self {
        NotTaken::Reject(r)
    }
}

/// A decoder set did not take a payload: an unknown schema id is asked of the registry, when
/// there is one; anything else is dead-lettered.
fn unknown(
    registry: &mut Option<RegistrySchemas>,
    input: Input,
    e: CodecError,
    now: i64,
) -> NotTaken {
    match (e, registry) {
        (CodecError::UnknownSchemaId(id), Some(r)) => match r.on_unknown(input, id, now) {
            Pending::Reject(e) => NotTaken::Reject(Reject::codec(e)),
            Pending::Wait(id) => NotTaken::Wait(id),
        },
        (e, _) => NotTaken::Reject(Reject::codec(e)),
    }
}

/// Checks a prediction and queues it in its partition's task; the model version it counts
/// for, `None` when the partition left this worker.
fn accept_prediction(
    tasks: &mut BTreeMap<i32, PartitionTask>,
    rules: &IntakeRules,
    partition: i32,
    p: &PredictionFields<'_>,
    now: i64,
) -> Result<Option<ModelVersionId>, Reject> {
    let model = (p.model_id, p.model_version);
    rules
        .check_prediction(p, now)
        .map_err(|r| Reject::rule(r, model))?;
    let Some(t) = tasks.get_mut(&partition) else {
        return Ok(None); // revoked meanwhile; the next owner reads it again
    };
    let typed = prediction_in(&mut t.task, p).map_err(|r| Reject::rule(r, model))?;
    t.task.push_prediction(typed);
    Ok(Some(typed.model))
}

/// Checks a label and queues it in its partition's task.
fn accept_label(
    tasks: &mut BTreeMap<i32, PartitionTask>,
    rules: &IntakeRules,
    partition: i32,
    l: &LabelFields<'_>,
    now: i64,
) -> Result<(), Reject> {
    let model = (l.model_id.unwrap_or(UNKNOWN.0), "");
    rules
        .check_label(l, now)
        .map_err(|r| Reject::rule(r, model))?;
    let Some(t) = tasks.get_mut(&partition) else {
        return Ok(());
    };
    let typed = label_in(&mut t.task, l).map_err(|r| Reject::rule(r, model))?;
    t.task.push_label(typed);
    Ok(())
}
