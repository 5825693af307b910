//! Committing on a thread of its own ([`super::eos::Commits::Background`]).
//!
//! The thread owns the batch: it runs the transaction ([`super::eos::commit`]) and hands back
//! `(outcome, result)`; the loop applies the outcome to the stage when it sees the thread
//! finished (each tick), or waits for it where it must (a revoke, shutdown). One commit at a
//! time: the next batch is taken only once the previous one finished, so offsets never move
//! backwards and nothing is produced into a transaction that is committing.

use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::Arc;

use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use thread_priority::{ThreadPriority, ThreadPriorityValue};
use tracing::debug;

use super::eos::commit;
use super::Batch;

/// What a finished commit hands back: the batch's outcome (none when the thread died) and
/// how long the transaction took, or why it failed.
pub struct Finished<O> {
    pub outcome: Option<O>,
    pub result: Result<Duration, KafkaError>,
}

/// The commit thread of a stage (at most one commit in flight).
pub struct CommitThread<O> {
    name: String,
    flush_interval: Duration,
    in_flight: Option<JoinHandle<(O, Result<Duration, KafkaError>)>>,
    /// How long the last committed transaction took.
    last_commit: Option<Duration>,
}

impl<O: Send + 'static> CommitThread<O> {
    /// `name` names the thread; `flush_interval` is how long a commit may take and still keep
    /// up ([`commits_keep_up`]).
    pub fn new(name: String, flush_interval: Duration) -> Self {
        CommitThread {
            name,
            flush_interval,
            in_flight: None,
            last_commit: None,
        }
    }

    /// Whether a commit is running.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Starts committing `batch`. On failure to start the thread, the batch is lost: the
    /// caller must treat the transaction as failed.
    pub fn start<B: Batch<Outcome = O>>(
        &mut self,
        producer: FutureProducer,
        writer: Arc<str>,
        batch: B,
        metadata: Arc<dyn Fn() -> Option<ConsumerGroupMetadata> + Send + Sync>,
        timeout: Duration,
    ) -> std::io::Result<()> {
        let yield_first = commits_keep_up(self.last_commit, self.flush_interval);
        let handle = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || {
                if yield_first {
                    yield_to_the_loop();
                }
                let mut batch = batch;
                let result = commit(&producer, &writer, &mut batch, metadata.as_ref(), timeout);
                (batch.into_outcome(), result)
            })?;
        self.in_flight = Some(handle);
        Ok(())
    }

    /// A commit made in the loop instead (a revoke, shutdown) took `took`.
    pub fn committed_inline(&mut self, took: Duration) {
        self.last_commit = Some(took);
    }

    /// The commit in flight once it finished (`block`: waiting for it); `None` when there is
    /// none, or (not blocking) it is still running.
    pub fn finish(&mut self, block: bool) -> Option<Finished<O>> {
        match &self.in_flight {
            Some(h) if block || h.is_finished() => {}
            _ => return None,
        }
        let handle = self.in_flight.take()?;
        let finished = match handle.join() {
            Ok((outcome, result)) => Finished {
                outcome: Some(outcome),
                result,
            },
            Err(_) => Finished {
                outcome: None,
                result: Err(KafkaError::MessageProduction(RDKafkaErrorCode::Fail)),
            },
        };
        if let Ok(took) = finished.result {
            self.last_commit = Some(took);
        }
        Some(finished)
    }
}

/// Priority of the commit thread on thread-priority's scale, which spreads 0..=99 over nice
/// 19..=-20 for the normal scheduling policies: 22 is nice 10 ([`yield_to_the_loop`]).
const COMMIT_THREAD_PRIORITY: u8 = 22;

/// Lowers the calling thread's priority to nice 10 (Linux; elsewhere the platform's nearest
/// equivalent).
///
/// The commit thread sorts and sends a flush interval's changelog delta and then waits for the
/// transaction: it has the whole interval to do so. Every millisecond the stage's loop waits
/// for a core meanwhile adds to the latency of every input queued behind it. At nice 10 the
/// scheduler gives the loop a core first (weight 1024 against 110) and the commit what is
/// left; when the machine has a core to spare, the commit runs at full speed. On the benchmark
/// machine (2 cores shared with the broker) p99 label → outcome at half load went from a
/// median of 177 ms to 85 ms over 6 and 10 alternated runs (BENCHMARKS.md). Only while commits
/// keep up ([`commits_keep_up`]).
pub fn yield_to_the_loop() {
    let value = ThreadPriorityValue::try_from(COMMIT_THREAD_PRIORITY);
    let set = value.map_err(|e| e.to_string()).and_then(|v| {
        thread_priority::set_current_thread_priority(ThreadPriority::Crossplatform(v))
            .map_err(|e| format!("{e:?}"))
    });
    if let Err(e) = set {
        debug!(error = %e, "commit thread keeps the default priority");
    }
}

/// Whether the next commit may yield to the loop ([`yield_to_the_loop`]): unless the last one
/// took longer than the flush interval. A commit thread short of CPU (a worker catching up at
/// full speed on one core) would otherwise fall further behind with each commit, every batch
/// larger than the last, until the broker aborts a transaction at its timeout; a commit that
/// overran its interval means the next runs at normal priority.
pub fn commits_keep_up(last_commit: Option<Duration>, flush_interval: Duration) -> bool {
    last_commit.is_none_or(|took| took <= flush_interval)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The thread's nice value, from `/proc/thread-self/stat` (the 19th field; the 2nd, the
    /// thread's name in parentheses, may hold spaces).
    #[cfg(target_os = "linux")]
    fn nice_of_this_thread() -> i32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(19 - 3).unwrap().parse().unwrap()
    }

    #[test]
    fn a_commit_that_overran_its_interval_makes_the_next_one_run_at_normal_priority() {
        let interval = Duration::from_secs(1);
        let ms = Duration::from_millis;
        assert!(commits_keep_up(None, interval));
        assert!(commits_keep_up(Some(ms(400)), interval));
        assert!(commits_keep_up(Some(ms(1_000)), interval));
        assert!(!commits_keep_up(Some(ms(1_001)), interval));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_commit_thread_yields_to_the_loop() {
        // Relative to how the tests were started (`nice cargo test` starts above 0). Started
        // above 10, whether the thread may go back to 10 depends on its privileges: not judged.
        let ours = nice_of_this_thread();
        let after = std::thread::spawn(|| {
            yield_to_the_loop();
            nice_of_this_thread()
        })
        .join()
        .unwrap();
        if ours <= 10 {
            assert_eq!(after, 10);
        }
        // Only the commit thread: this one keeps its priority.
        assert_eq!(nice_of_this_thread(), ours);
    }
}
