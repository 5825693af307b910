//! Both stages run in the test's process on the scenario of [`crate::scenario`]: settings,
//! start, waiting for the join to account for every input, stop.
#![allow(clippy::expect_used)]

use std::time::Duration;

use driftwatch_worker::join::{JoinStageHandle, JoinStats};
use driftwatch_worker::monitor::{MonitorStageHandle, MonitorStats};
use driftwatch_worker::pipeline::{Pipeline, Role, RunningPipeline};
use driftwatch_worker::settings::{KafkaSettings, Settings};

use crate::monitor_outputs::{apply_monitor_settings, assert_monitor, create_topics_of};
use crate::outcomes::{assert_reference, Outcomes, PartialsReader};
use crate::scenario::{produce_records, Scenario, LABEL_TIMEOUT_MS};

/// Exactly-once settings of both stages for the scenario, on fresh topics of `partitions`.
pub async fn scenario_settings(partitions: i32) -> Settings {
    scenario_settings_with(crate::settings(), partitions).await
}

/// [`scenario_settings`] with the given connection settings (another listener, security).
pub async fn scenario_settings_with(kafka: KafkaSettings, partitions: i32) -> Settings {
    crate::init_logging();
    let mut s = Settings {
        kafka,
        ..Settings::default()
    };
    create_topics_of(&mut s, partitions).await;
    apply_monitor_settings(&mut s);
    s.join.label_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    s.join.orphan_timeout = Duration::from_millis(LABEL_TIMEOUT_MS as u64);
    s.join.allowed_lateness = Duration::from_secs(30);
    s.join.idle_timeout = Duration::from_secs(3);
    s.join.flush_interval = Duration::from_millis(500);
    crate::with_state_from_env(&mut s);
    s
}

/// The join and monitor stages, running (a [`RunningPipeline`] of both).
pub struct Stages {
    pub join: JoinStageHandle,
    pub monitor: MonitorStageHandle,
    running: RunningPipeline,
}

impl Stages {
    /// Builds and starts both stages.
    pub fn start(s: &Settings) -> Stages {
        let running = Pipeline::new(s, Role::Both)
            .expect("join and monitor stages")
            .start();
        let handles = running.handles();
        Stages {
            join: handles.join.clone().expect("the join stage runs"),
            monitor: handles.monitor.clone().expect("the monitor stage runs"),
            running,
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

    /// Stops both stages (the join first); panics when one of them ended with an error.
    pub async fn stop(self) -> (JoinStats, MonitorStats) {
        self.running
            .stop()
            .await
            .expect("both stages end without error");
        (self.join.stats(), self.monitor.stats())
    }
}

/// Runs `scenario` through both stages with `disrupt` (on a blocking thread) between its two
/// halves, then checks what was committed, exactly: the partials equal the offline reference,
/// the monitor's outputs agree with those partials (see [`assert_monitor`]). Stops the stages
/// (both must end without error) and returns their stats.
pub async fn run_disrupted(
    s: &Settings,
    scenario: &Scenario,
    partitions: i32,
    disrupt: impl FnOnce() + Send + 'static,
) -> (JoinStats, MonitorStats) {
    let stages = Stages::start(s);
    let half = scenario.records.len() / 2;
    produce_records(s, &scenario.records[..half]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(disrupt)
        .await
        .expect("disruption");
    produce_records(s, &scenario.records[half..]).await;
    stages
        .wait_for_inputs(scenario.inputs(), Duration::from_secs(120))
        .await;
    // What the monitor reads: the committed partials sum to the reference exactly (an aborted
    // transaction's partials are invisible, none is committed twice).
    let reference = Outcomes::reference(scenario);
    let mut reader = PartialsReader::new(s, partitions);
    reader.read_until(reference.total(), Duration::from_secs(60));
    assert_reference(&reader.seen, &reference, &[]);
    tokio::task::block_in_place(|| assert_monitor(s, &reader, &[], Duration::from_secs(120)));
    stages.stop().await
}
