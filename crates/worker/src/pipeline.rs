//! The pipeline: the sources stage, the join stage, the monitor stage, or all of them, started
//! and stopped as one.
//!
//! Every process that runs stages goes through [`Pipeline`]: `driftwatch run`, the demo, the
//! bench and the integration tests. Each stage runs as its own task on the caller's tokio
//! runtime. They stop in order, upstream first: the sources (its last predictions committed
//! while the join still reads), then the join, so that its last partials and the progress
//! records that follow them are committed while the monitor still reads, then the monitor,
//! which commits what it applied. When a stage ends on its own (an error, a panic), the other
//! is stopped the same way and the first error is returned.

use std::future::Future;

use tokio::sync::oneshot;
use tokio::task::{JoinError, JoinHandle};
use tracing::{debug, error};

use crate::error::{Result, WorkerError};
use crate::join::{JoinStage, JoinStageHandle};
use crate::monitor::{MonitorStage, MonitorStageHandle};
use crate::settings::Settings;
use crate::sources::{SourcesStage, SourcesStageHandle};
use crate::status::StageHandles;

/// Which stages a pipeline runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The join stage: predictions ⋈ ground truth → model partials.
    Join,
    /// The monitor stage: model partials → drift events, retrain events, metrics snapshots.
    Monitor,
    /// Both stages in one process, and the sources stage when `[[sources]]` are configured.
    Both,
    /// The sources stage: model-server topics → predictions.
    Sources,
}

impl Role {
    fn runs_sources(self, settings: &Settings) -> bool {
        match self {
            Role::Sources => true,
            Role::Both => !settings.sources.is_empty(),
            Role::Join | Role::Monitor => false,
        }
    }

    fn runs_join(self) -> bool {
        matches!(self, Role::Join | Role::Both)
    }

    fn runs_monitor(self) -> bool {
        matches!(self, Role::Monitor | Role::Both)
    }
}

/// Handles on a pipeline's stages: read their accounting while they run and after.
#[derive(Clone, Default)]
pub struct PipelineHandles {
    /// The join stage's, when it runs.
    pub join: Option<JoinStageHandle>,
    /// The monitor stage's, when it runs.
    pub monitor: Option<MonitorStageHandle>,
    /// The sources stage's, when it runs.
    pub sources: Option<SourcesStageHandle>,
}

/// The stages of a [`Role`], built and checked but not yet consuming.
pub struct Pipeline {
    sources: Option<SourcesStage>,
    join: Option<JoinStage>,
    monitor: Option<MonitorStage>,
    handles: PipelineHandles,
    join_group: String,
    monitor_group: String,
}

impl Pipeline {
    /// Builds the stages `role` names from `settings` (upstream first), each checking its
    /// topics; the first error is returned.
    pub fn new(settings: &Settings, role: Role) -> Result<Self> {
        let sources = role
            .runs_sources(settings)
            .then(|| SourcesStage::new(settings.clone()))
            .transpose()?;
        let join = role
            .runs_join()
            .then(|| JoinStage::new(settings.clone()))
            .transpose()?;
        let monitor = role
            .runs_monitor()
            .then(|| MonitorStage::new(settings.clone()))
            .transpose()?;
        let handles = PipelineHandles {
            join: join.as_ref().map(JoinStage::handle),
            monitor: monitor.as_ref().map(MonitorStage::handle),
            sources: sources.as_ref().map(SourcesStage::handle),
        };
        Ok(Pipeline {
            sources,
            join,
            monitor,
            handles,
            join_group: settings.kafka.join_group_id.clone(),
            monitor_group: settings.monitor.group_id.clone(),
        })
    }

    /// Handles on the stages, to read while they run.
    pub fn handles(&self) -> PipelineHandles {
        self.handles.clone()
    }

    /// The handles as the metrics and health endpoints read them.
    pub fn stage_handles(&self) -> StageHandles {
        StageHandles {
            join: self
                .handles
                .join
                .clone()
                .map(|h| (h, self.join_group.clone())),
            monitor: self.handles.monitor.clone(),
            monitor_group: self.monitor_group.clone(),
            sources: self.handles.sources.clone(),
        }
    }

    /// Runs the stages until `shutdown` resolves or one of them ends on its own, then stops
    /// them in order (sources, join, monitor). Returns the first error.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let (stop_sources, sources_stopped) = oneshot::channel::<()>();
        let mut sources = self.sources.map(|stage| {
            tokio::spawn(stage.run(async {
                let _ = sources_stopped.await;
            }))
        });
        let (stop_join, join_stopped) = oneshot::channel::<()>();
        let (stop_monitor, monitor_stopped) = oneshot::channel::<()>();
        let mut join = self.join.map(|stage| {
            tokio::spawn(stage.run(async {
                let _ = join_stopped.await;
            }))
        });
        let mut monitor = self.monitor.map(|stage| {
            tokio::spawn(stage.run(async {
                let _ = monitor_stopped.await;
            }))
        });
        let mut first_error = None;
        tokio::pin!(shutdown);
        tokio::select! {
            _ = &mut shutdown => {}
            r = ended(&mut sources) => {
                sources = None;
                keep_first(&mut first_error, "sources", r);
            }
            r = ended(&mut join) => {
                join = None;
                keep_first(&mut first_error, "join", r);
            }
            r = ended(&mut monitor) => {
                monitor = None;
                keep_first(&mut first_error, "monitor", r);
            }
        }
        let _ = stop_sources.send(());
        if let Some(task) = sources {
            keep_first(&mut first_error, "sources", task.await);
        }
        let _ = stop_join.send(());
        if let Some(task) = join {
            keep_first(&mut first_error, "join", task.await);
        }
        let _ = stop_monitor.send(());
        if let Some(task) = monitor {
            keep_first(&mut first_error, "monitor", task.await);
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Runs the stages on a task of their own until [`RunningPipeline::stop`].
    pub fn start(self) -> RunningPipeline {
        let handles = self.handles();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async {
            let _ = stopped.await;
        }));
        RunningPipeline {
            handles,
            stop,
            task,
        }
    }
}

/// A pipeline running on a task of its own ([`Pipeline::start`]).
pub struct RunningPipeline {
    handles: PipelineHandles,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<()>>,
}

impl RunningPipeline {
    /// Handles on the stages.
    pub fn handles(&self) -> &PipelineHandles {
        &self.handles
    }

    /// Whether the stages have ended (on their own: only [`stop`](Self::stop) asks them to).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the stages in order (sources, join, monitor) and waits for them; returns their
    /// handles, or the first error.
    pub async fn stop(self) -> Result<PipelineHandles> {
        let _ = self.stop.send(());
        match self.task.await {
            Ok(r) => r.map(|()| self.handles),
            Err(e) => Err(task_failed("pipeline", &e)),
        }
    }
}

/// Waits for a stage's task to end; never, when there is none.
async fn ended(task: &mut Option<JoinHandle<Result<()>>>) -> Result<Result<()>, JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

/// Keeps the first error of the stages; later ones are logged.
fn keep_first(
    first: &mut Option<WorkerError>,
    stage: &'static str,
    ended: Result<Result<()>, JoinError>,
) {
    let e = match ended {
        Ok(Ok(())) => {
            debug!(stage, "stage stopped");
            return;
        }
        Ok(Err(e)) => e,
        Err(e) => task_failed(stage, &e),
    };
    if first.is_none() {
        *first = Some(e);
    } else {
        error!(stage, error = %e, "stage failed as well");
    }
}

fn task_failed(stage: &'static str, e: &JoinError) -> WorkerError {
    WorkerError::Task {
        stage,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_name_their_stages() {
        assert!(Role::Join.runs_join() && !Role::Join.runs_monitor());
        assert!(!Role::Monitor.runs_join() && Role::Monitor.runs_monitor());
        assert!(Role::Both.runs_join() && Role::Both.runs_monitor());
        let mut s = Settings::default();
        assert!(Role::Sources.runs_sources(&s) && !Role::Sources.runs_join());
        assert!(!Role::Both.runs_sources(&s) && !Role::Join.runs_sources(&s));
        s.sources = vec![toml::from_str(
            "name = \"m\"\n[kserve]\ntopics = [\"k\"]\n[mapping]\nmodel_id = { from = \"field\" }\nmodel_version = { from = \"field\" }\nprediction = { tensor = \"p\", as = \"value\" }\n",
        )
        .unwrap()];
        assert!(Role::Both.runs_sources(&s) && !Role::Monitor.runs_sources(&s));
    }

    #[tokio::test]
    async fn the_first_error_is_kept() {
        let mut first = None;
        keep_first(&mut first, "join", Ok(Ok(())));
        assert!(first.is_none());
        keep_first(&mut first, "join", Ok(Err(WorkerError::State("a".into()))));
        keep_first(
            &mut first,
            "monitor",
            Ok(Err(WorkerError::State("b".into()))),
        );
        assert!(
            matches!(&first, Some(WorkerError::State(m)) if m == "a"),
            "{first:?}"
        );
        let panicked = tokio::spawn(async { panic!("boom") }).await;
        let mut first = None;
        keep_first(&mut first, "monitor", panicked.map(|()| Ok(())));
        let message = first.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("monitor stage"), "{message}");
    }
}
