//! Writer schemas fetched from the schema registry while the stage runs (`[schema_registry]`).
//!
//! A framed record whose schema id the input's decoders do not hold is not decoded yet: the id
//! is looked up ([`SchemaIds`], no I/O) and, while it is being fetched, the record's input
//! partition is **held**: paused at the record's offset, which the partition's task does not
//! pass (so no offset beyond it is committed). Records of a held partition that were already
//! fetched are dropped unread. Once the id is answered the hold is released: the consumer is
//! moved back to the held offset ([`crate::runtime::Stage::take_seeks`]) and reads on from
//! there; an id absent from the registry sends its records to the dead-letter topic. The
//! HTTP requests run as tasks on the runtime; their answers are taken in on every tick.
//!
//! A rebalance or an exactly-once rewind drops the holds of the partitions concerned: their
//! consumer position is set anew, before the held offset.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::{channel, Receiver, Sender};

use driftwatch_codec::framing::DecoderSet;
use driftwatch_codec::registry::{Lookup, SchemaIds, Unknown};
use driftwatch_codec::CodecError;
use driftwatch_core::join::Input;
use tracing::{info, warn};

use super::partition::input_index;
use crate::runtime::InputPartition;
use crate::schema_registry::RegistryClient;
use crate::settings::{SchemaRegistrySettings, MIN_BACKOFF};

/// An answer of the registry: input index, schema id, what it said.
type Answer = (usize, u32, Lookup);

/// What became of a record whose schema id is not in the decoders.
pub(super) enum Pending {
    /// Dead-letter it.
    Reject(CodecError),
    /// Hold its partition at its offset until `id` is answered.
    Wait(u32),
}

/// The registry's ids per input, the held input partitions, and the answers coming back.
pub(super) struct RegistrySchemas {
    client: RegistryClient,
    /// By [`input_index`]: each input's decoders are built from the ids its records name.
    ids: [SchemaIds; 2],
    /// By input: the ids whose decoders were added, oldest first (dropped beyond capacity).
    cached: [VecDeque<u32>; 2],
    capacity: usize,
    answers: (Sender<Answer>, Receiver<Answer>),
    /// Held (source, partition): the offset to read again, the input index and the id awaited.
    held: HashMap<(usize, i32), (i64, usize, u32)>,
    /// Released holds: read again from the offset (seeked before the partition resumes);
    /// records past it that were fetched before the seek are dropped until it arrives.
    resume_at: HashMap<(usize, i32), i64>,
    seeks: Vec<(InputPartition, i64)>,
    /// Requests sent, answers found and absent, for the logs and the stats.
    pub(super) fetched: u64,
}

impl RegistrySchemas {
    pub(super) fn new(s: &SchemaRegistrySettings) -> crate::Result<Option<Self>> {
        if !s.enabled() {
            return Ok(None);
        }
        let client =
            RegistryClient::new(s).map_err(|e| crate::WorkerError::Config(e.to_string()))?;
        let ids = || SchemaIds::new(s.cache_capacity, MIN_BACKOFF, s.max_backoff);
        Ok(Some(RegistrySchemas {
            client,
            ids: [ids(), ids()],
            cached: [VecDeque::new(), VecDeque::new()],
            capacity: s.cache_capacity,
            answers: channel(),
            held: HashMap::new(),
            resume_at: HashMap::new(),
            seeks: Vec::new(),
            fetched: 0,
        }))
    }

    /// A record of `input` names `id`, which its decoders do not hold.
    pub(super) fn on_unknown(&mut self, input: Input, id: u32, now: i64) -> Pending {
        match self.ids[input_index(input)].on_unknown(id, now) {
            Unknown::DeadLetter(e) => Pending::Reject(e),
            Unknown::Wait => Pending::Wait(id),
        }
    }

    /// Whether a record at `offset` of (`source`, `partition`) is to be dropped unread: its
    /// partition is held, or it was fetched before the consumer went back to the held offset.
    /// `source` is the topic's index in the stage's schedule (the repartition topic included).
    pub(super) fn skips(&mut self, source: usize, partition: i32, offset: i64) -> bool {
        let key = (source, partition);
        if self.held.contains_key(&key) {
            return true;
        }
        match self.resume_at.get(&key) {
            Some(at) if offset > *at => true,
            Some(_) => {
                self.resume_at.remove(&key);
                false
            }
            None => false,
        }
    }

    /// Holds (`source`, `partition`) at `offset` until `id` (of the input the source's
    /// records decode as) is answered.
    pub(super) fn hold(
        &mut self,
        source: usize,
        input: Input,
        partition: i32,
        offset: i64,
        id: u32,
    ) {
        self.held
            .insert((source, partition), (offset, input_index(input), id));
    }

    /// Whether the input partition is held (it must stay paused).
    pub(super) fn is_held(&self, p: &InputPartition) -> bool {
        self.held.contains_key(&(p.topic, p.partition)) || self.seeks.iter().any(|(s, _)| s == p)
    }

    /// Takes in the answers that arrived, sends the requests that are due, and releases the
    /// holds whose id was answered, adding fetched schemas to the inputs' decoders.
    pub(super) fn poll<P, L>(
        &mut self,
        now: i64,
        predictions: &mut DecoderSet<P>,
        labels: &mut DecoderSet<L>,
    ) {
        while let Ok((input, id, lookup)) = self.answers.1.try_recv() {
            let Some(ids) = self.ids.get_mut(input) else {
                continue;
            };
            if let Lookup::Retry(reason) = &lookup {
                warn!(input, id, reason, "schema registry not answering: records of the id wait, asked again with backoff");
            }
            let Some(schema) = ids.answered(id, lookup, now) else {
                continue;
            };
            let added = if input == input_index(Input::Predictions) {
                predictions.insert(id, &schema)
            } else {
                labels.insert(id, &schema)
            };
            match added {
                Ok(()) => {
                    info!(input, id, "writer schema fetched from the schema registry");
                    let cached = &mut self.cached[input];
                    cached.push_back(id);
                    while cached.len() > self.capacity {
                        if let Some(old) = cached.pop_front() {
                            if input == input_index(Input::Predictions) {
                                predictions.remove(old);
                            } else {
                                labels.remove(old);
                            }
                        }
                    }
                }
                Err(e) => {
                    warn!(input, id, error = %e, "writer schema of the registry cannot be read: its records are dead-lettered");
                    ids.mark_absent(id, e);
                }
            }
        }
        for (input, ids) in self.ids.iter_mut().enumerate() {
            for id in ids.due(now) {
                self.fetched += 1;
                let client = self.client.clone();
                let tx = self.answers.0.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            let _ = tx.send((input, id, client.schema(id).await));
                        });
                    }
                    Err(e) => {
                        let _ = tx.send((input, id, Lookup::Retry(e.to_string())));
                    }
                }
            }
        }
        let ids = &self.ids;
        let released: Vec<((usize, i32), i64)> = self
            .held
            .iter()
            .filter(|(_, (_, input, id))| !ids[*input].is_waiting(*id))
            .map(|(k, (offset, _, _))| (*k, *offset))
            .collect();
        for ((source, partition), offset) in released {
            self.held.remove(&(source, partition));
            self.resume_at.insert((source, partition), offset);
            self.seeks.push((
                InputPartition {
                    topic: source,
                    partition,
                },
                offset,
            ));
        }
    }

    /// The released holds to seek back to, before they resume.
    pub(super) fn take_seeks(&mut self) -> Vec<(InputPartition, i64)> {
        std::mem::take(&mut self.seeks)
    }

    /// The consumer's position of these partitions was set anew (rebalance, rewind): their
    /// holds are void.
    pub(super) fn forget(&mut self, partition: impl Fn(i32) -> bool) {
        self.held.retain(|(_, p), _| !partition(*p));
        self.resume_at.retain(|(_, p), _| !partition(*p));
        self.seeks.retain(|(ip, _)| !partition(ip.partition));
    }

    /// The error of a fetch still failing: the registry is not answering.
    pub(super) fn failing(&self) -> Option<String> {
        self.ids
            .iter()
            .find_map(SchemaIds::failing)
            .map(|(id, e)| format!("schema id {id}: {e}"))
    }

    /// Input partitions held now.
    pub(super) fn held_count(&self) -> usize {
        self.held.len()
    }
}
