//! A task and its local store: sealing the store at a clean close, resuming from a sealed
//! one, and replaying changelog records in log order (see
//! [`crate::join::buffer::seal`] and [`crate::join::changelog::ChangelogReplay`]).

use super::{InputState, JoinTask, TaskCheckpoint};
use crate::join::{
    ColdError, ColdTier, EntryRecord, Interner, JoinConfig, JoinError, ModelVersionId, RequestKey,
    StoreCheckpoint,
};

impl JoinTask {
    /// Moves every hot entry to the cold tier and seals it with `checkpoint`, whose task,
    /// names, cold counts and config digest are filled in here. Call once the task's state is
    /// committed up to `checkpoint.changelog_offset`; the task must not be used afterwards.
    pub fn seal_cold_tier(&mut self, mut checkpoint: StoreCheckpoint) -> Result<(), ColdError> {
        checkpoint.cold = self.buffer.spill_all()?;
        checkpoint.task = self.checkpoint();
        checkpoint.config_digest = self.config.due_digest();
        checkpoint.models = (1..self.interner.model_count())
            .filter_map(|i| u16::try_from(i).ok())
            .filter_map(|i| self.interner.model(ModelVersionId(i)))
            .map(|(m, v)| (m.to_string(), v.to_string()))
            .collect();
        checkpoint.classes = (0..self.interner.class_count())
            .filter_map(|i| u32::try_from(i).ok())
            .filter_map(|i| self.interner.class(crate::join::ClassId(i)))
            .map(str::to_string)
            .collect();
        self.buffer.seal_cold_tier(&checkpoint)
    }

    /// A task resumed from a sealed cold tier (`tier` holds the entries `checkpoint`
    /// describes). Fails when the names do not rebuild or the settings' due digest differs.
    pub fn resume(
        config: JoinConfig,
        checkpoint: &StoreCheckpoint,
        tier: Box<dyn ColdTier>,
        hot_capacity: usize,
    ) -> Result<Self, JoinError> {
        if checkpoint.config_digest != config.due_digest() {
            return Err(JoinError::InvalidConfig(
                "the store was sealed under other timeouts".into(),
            ));
        }
        let interner = Interner::restore(checkpoint.models.clone(), checkpoint.classes.clone())?;
        let mut task = Self::with_interner(config, interner)?;
        task.replay_checkpoint(checkpoint.task);
        task.buffer
            .adopt_cold_tier(tier, hot_capacity, &checkpoint.cold);
        Ok(task)
    }

    /// Keeps only what the changelog holds of the task — the buffer (with its cold tier),
    /// the names, the watermark and each input's progress — and forgets the rest: queued
    /// records (not processed, so not committed: the next owner reads them again), the
    /// inputs' caught-up and idle state (read by processing time), the counters, and change
    /// tracking. A task its owner gave up after committing becomes what a restore from the
    /// changelog would make of it, so it can follow the changelog as a standby and be taken
    /// over later. Kept, the idle state would let the next owner's first poll count both
    /// inputs idle since the revocation and move the watermark to the wall clock.
    pub fn forget_transient(&mut self) {
        self.buffer.track_changes(false);
        self.predictions.clear();
        self.labels.clear();
        self.counters.clear();
        self.waiting_since = None;
        self.draining = false;
        for input in [&mut self.pred_input, &mut self.label_input] {
            *input = InputState {
                progress: input.progress,
                ..InputState::new()
            };
        }
    }

    /// Sets watermark and progress, as a changelog checkpoint record replayed.
    pub(crate) fn replay_checkpoint(&mut self, c: TaskCheckpoint) {
        self.watermark = c.watermark;
        self.pred_input.progress = c.prediction_progress;
        self.label_input.progress = c.label_progress;
        self.buffer.restore_watermark(c.watermark);
    }

    /// Interns model `id` as a replayed changelog record: `id` must be the next one, or an
    /// id already known under the same names (a record replayed twice).
    pub(crate) fn replay_model(
        &mut self,
        id: u16,
        model_id: &str,
        version: &str,
    ) -> Result<(), JoinError> {
        if usize::from(id) < self.interner.model_count() {
            return match self.interner.model(ModelVersionId(id)) {
                Some((m, v)) if m == model_id && v == version => Ok(()),
                _ => Err(JoinError::InvalidConfig(format!(
                    "model id {id} names `{model_id}/{version}` and another model"
                ))),
            };
        }
        let got = self.intern_model(model_id, version)?;
        if got.0 != id {
            return Err(JoinError::InvalidConfig(format!(
                "model `{model_id}/{version}` replayed as id {id} but interned as {}",
                got.0
            )));
        }
        Ok(())
    }

    /// Interns class `id` as a replayed changelog record (see [`Self::replay_model`]).
    pub(crate) fn replay_class(&mut self, id: u32, label: &str) -> Result<(), JoinError> {
        let known = u32::try_from(self.interner.class_count()).unwrap_or(u32::MAX);
        if id < known {
            return match self.interner.class(crate::join::ClassId(id)) {
                Some(c) if c == label => Ok(()),
                _ => Err(JoinError::InvalidConfig(format!(
                    "class id {id} names `{label}` and another class"
                ))),
            };
        }
        let got = self.intern_class(label)?;
        if got.0 != id {
            return Err(JoinError::InvalidConfig(format!(
                "class `{label}` replayed as id {id} but interned as {}",
                got.0
            )));
        }
        Ok(())
    }

    /// Sets an entry as a replayed changelog record (`None`: gone).
    pub(crate) fn replay_entry(
        &mut self,
        key: RequestKey,
        entry: Option<EntryRecord>,
    ) -> Result<(), JoinError> {
        self.buffer.replay_entry(key, entry)
    }
}
