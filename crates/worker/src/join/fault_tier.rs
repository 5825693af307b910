//! A cold tier whose writes fail at the `state.write` failure point ([`crate::fault`]), as on
//! a full disk: only in builds with the `fault-points` feature.

use driftwatch_core::join::{ColdError, ColdTier, EntryRecord, RequestKey, StoreCheckpoint};
use driftwatch_core::TimestampMs;

/// Wraps a tier; its writes fail once the failure point is due.
#[derive(Debug)]
pub(super) struct FaultTier(pub(super) Box<dyn ColdTier>);

fn full() -> Result<(), ColdError> {
    if crate::fault::fails("state.write") {
        return Err(ColdError(
            "No space left on device (os error 28) [failure point state.write]".into(),
        ));
    }
    Ok(())
}

impl ColdTier for FaultTier {
    fn get(&mut self, key: RequestKey) -> Result<Option<EntryRecord>, ColdError> {
        self.0.get(key)
    }

    fn put(&mut self, entries: &[(RequestKey, EntryRecord, TimestampMs)]) -> Result<(), ColdError> {
        full()?;
        self.0.put(entries)
    }

    fn remove(&mut self, key: RequestKey, due: TimestampMs) -> Result<(), ColdError> {
        full()?;
        self.0.remove(key, due)
    }

    fn take_due(
        &mut self,
        before: TimestampMs,
        limit: usize,
        out: &mut Vec<(RequestKey, EntryRecord)>,
    ) -> Result<(), ColdError> {
        full()?;
        self.0.take_due(before, limit, out)
    }

    fn size_bytes(&self) -> u64 {
        self.0.size_bytes()
    }

    fn seal(&mut self, checkpoint: &StoreCheckpoint) -> Result<(), ColdError> {
        full()?;
        self.0.seal(checkpoint)
    }
}
