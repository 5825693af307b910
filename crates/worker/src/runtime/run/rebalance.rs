//! The loop's side of the rebalance hand-off (see the module docs of [`crate::runtime`]):
//! revoke after the open work is committed or aborted, assign after the stage's restore, and
//! leaving the group at a stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::TopicPartitionList;
use tracing::{error, info, warn};

use super::{Failure, Loop};
use crate::error::Result;
use crate::runtime::context::{answer_assign, answer_revoke, Rebalance, StageContext};
use crate::runtime::transaction::{blocking, committed_stable};
use crate::runtime::{partition_numbers, Guarantee, Stage};

impl<S: Stage> Loop<S> {
    /// Handles every queued rebalance, oldest first.
    pub(super) async fn rebalance(&mut self, context: &StageContext) -> Result<()> {
        while let Some(event) = context.next_rebalance() {
            match event {
                Rebalance::Revoke { partitions, lost } => self.revoke(partitions, lost).await,
                Rebalance::Assign(partitions) => self.assign(partitions)?,
            }
            self.publish();
        }
        Ok(())
    }

    /// Commits the open work with its offsets (aborts it when the assignment was lost), has
    /// the stage drop the partitions, then gives them up.
    async fn revoke(&mut self, partitions: TopicPartitionList, lost: bool) {
        let started = Instant::now();
        let lost = lost || self.consumer.assignment_lost();
        let mut committed = false;
        match &self.guarantee {
            Guarantee::ExactlyOnce(_) => {
                let failure = if lost {
                    // The commit in flight still reports; the open transaction is aborted.
                    self.finish_in_flight()
                        .err()
                        .map(|(o, e)| (o, Some(e)))
                        .or(Some((None, None)))
                } else {
                    self.commit_now().err().map(|(o, e)| (o, Some(e)))
                };
                match failure {
                    None => committed = true,
                    Some((outcome, cause)) => {
                        if let Some(e) = &cause {
                            warn!(error = %e, "transaction on revoke failed: aborting");
                        }
                        // The partitions go either way. A producer left unusable fails the
                        // next transaction, whose recovery replaces it or stops the stage.
                        if let Err(e) = self.abort(outcome, cause) {
                            error!(error = %e, "abort on revoke failed");
                        }
                    }
                }
            }
            Guarantee::AtLeastOnce => {
                self.flush_now(Some(Duration::from_secs(30))).await;
                committed = true;
            }
        }
        // Work not committed is as good as lost to the stage: its state is not what the
        // changelog holds.
        self.stage.revoked(&partitions, lost || !committed);
        let topics = &self.schedule.topics;
        self.seeks.retain(|(p, _)| {
            topics
                .get(p.topic)
                .is_none_or(|t| partitions.find_partition(t, p.partition).is_none())
        });
        // `seconds`: how long the revocation held the partitions (the commit, then the
        // stage's part) before giving them up.
        let seconds = started.elapsed().as_secs_f64();
        info!(stage = self.schedule.name, partitions = ?partition_numbers(&partitions), committed, lost, seconds, "partitions revoked");
        if let Err(e) = answer_revoke(self.consumer.as_ref(), &partitions) {
            warn!(error = %e, "unassign");
        }
    }

    /// Exactly-once: waits for the commit in flight and applies its outcome.
    fn finish_in_flight(&mut self) -> Result<(), Failure<S>> {
        let Some(thread) = &mut self.background else {
            return Ok(());
        };
        match blocking(|| thread.finish(true)) {
            Some(finished) => match (finished.result, finished.outcome) {
                (Ok(took), Some(outcome)) => {
                    self.stage.committed(outcome, took);
                    Ok(())
                }
                (Ok(_), None) => Ok(()),
                (Err(e), outcome) => Err((outcome, e)),
            },
            None => Ok(()),
        }
    }

    /// Has the stage restore the partitions, positions it at the committed offsets, then
    /// takes them: no record of a partition reaches the stage before its state is back.
    fn assign(&mut self, partitions: TopicPartitionList) -> Result<()> {
        let timeout = self.timeout();
        let restored = blocking(|| {
            self.stage.assigned(&partitions)?;
            // Asked after the restore: a predecessor's transaction that was still open when
            // the restore began has ended by now (the restore fenced it or waited for it), so
            // these are the offsets the restored state is as of. One that held offsets but
            // had no record in the changelog yet is ended here ([`committed_stable`]).
            let exactly_once = matches!(self.guarantee, Guarantee::ExactlyOnce(_));
            let stage = &mut self.stage;
            let committed = committed_stable(self.consumer.as_ref(), &partitions, timeout, || {
                if exactly_once {
                    warn!(partitions = ?partition_numbers(&partitions), "committed offsets still pending: a previous owner's transaction holds them");
                    stage.offsets_pending(&partitions);
                }
            })
            .unwrap_or_else(|e| {
                    warn!(error = %e, "committed offsets unknown");
                    TopicPartitionList::new()
                });
            self.stage.positioned(&committed);
            crate::fault::point("rebalance.restored");
            Ok(())
        });
        // Answered even after a failed restore: the stage then stops, and closing the
        // consumer needs the assignment call made.
        if let Err(e) = answer_assign(self.consumer.as_ref(), &partitions) {
            error!(error = %e, "assign");
            restored?;
            return Err(e.into());
        }
        info!(stage = self.schedule.name, partitions = ?partition_numbers(&partitions), restored = restored.is_ok(), "partitions assigned");
        restored
    }
}

/// Longest wait for the consumer to give its partitions up at a stop.
const LEAVE_WAIT: Duration = Duration::from_secs(5);

/// Leaves the group: unsubscribes and serves the consumer (its rebalance callback gives
/// the partitions up) until it holds none, for at most [`LEAVE_WAIT`]. The partitions
/// then go to their next owners while the stage's `stopped` hook does its slow part
/// (sealing the join's local stores) instead of after it. Records read meanwhile are
/// dropped: their offsets are not committed, so their next owner reads them.
pub(super) async fn leave(consumer: Arc<StreamConsumer<StageContext>>) {
    consumer.unsubscribe();
    let deadline = Instant::now() + LEAVE_WAIT;
    while Instant::now() < deadline && consumer.assignment().is_ok_and(|a| a.count() > 0) {
        let _ = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await;
    }
}
