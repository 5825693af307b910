//! Both stages run in the test's process on the scenario of [`crate::scenario`]: settings,
//! start, waiting for the join to account for every input, stop.
#![allow(clippy::expect_used)]

use std::time::Duration;

use driftwatch_worker::join_stage::{JoinStage, JoinStageHandle, JoinStats};
use driftwatch_worker::monitor_stage::{MonitorStage, MonitorStageHandle, MonitorStats};
use driftwatch_worker::settings::Settings;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::monitor_outputs::{apply_monitor_settings, create_topics_of};
use crate::scenario::LABEL_TIMEOUT_MS;

/// Exactly-once settings of both stages for the scenario, on fresh topics of `partitions`.
pub async fn scenario_settings(partitions: i32) -> Settings {
    crate::init_logging();
    let mut s = Settings {
        kafka: crate::settings(),
        ..Settings::default()
    };
    create_topics_of(&mut s, partitions).await;
    apply_monitor_settings(&mut s);
    s.join.label_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    s.join.orphan_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    s.join.allowed_lateness = Duration::from_secs(30);
    s.join.max_task_idle = Duration::from_secs(1);
    s.join.idle_timeout = Duration::from_secs(3);
    s.join.flush_interval = Duration::from_millis(500);
    s
}

/// The join and monitor stages, running.
pub struct Stages {
    pub join: JoinStageHandle,
    pub monitor: MonitorStageHandle,
    stop_join: oneshot::Sender<()>,
    stop_monitor: oneshot::Sender<()>,
    join_task: JoinHandle<driftwatch_worker::error::Result<()>>,
    monitor_task: JoinHandle<driftwatch_worker::error::Result<()>>,
}

impl Stages {
    /// Builds and starts both stages.
    pub fn start(s: &Settings) -> Stages {
        let join = JoinStage::new(s.clone()).expect("join stage");
        let monitor = MonitorStage::new(s.clone()).expect("monitor stage");
        let (join_handle, monitor_handle) = (join.handle(), monitor.handle());
        let (stop_join, rx_join) = oneshot::channel::<()>();
        let (stop_monitor, rx_monitor) = oneshot::channel::<()>();
        let join_task = tokio::spawn(join.run(async {
            let _ = rx_join.await;
        }));
        let monitor_task = tokio::spawn(monitor.run(async {
            let _ = rx_monitor.await;
        }));
        Stages {
            join: join_handle,
            monitor: monitor_handle,
            stop_join,
            stop_monitor,
            join_task,
            monitor_task,
        }
    }

    /// Waits (up to `timeout`) until the join accounted for `inputs` input records.
    pub async fn wait_for_inputs(&self, inputs: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let total: u64 = self
                .join
                .stats()
                .per_model
                .values()
                .map(driftwatch_core::JoinCounters::inputs)
                .sum();
            if total >= inputs || tokio::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops both stages; panics when one of them ended with an error.
    pub async fn stop(self) -> (JoinStats, MonitorStats) {
        let _ = self.stop_join.send(());
        self.join_task
            .await
            .expect("join task")
            .expect("the join stage ends without error");
        let _ = self.stop_monitor.send(());
        self.monitor_task
            .await
            .expect("monitor task")
            .expect("the monitor stage ends without error");
        (self.join.stats(), self.monitor.stats())
    }
}
