//! `driftwatch run` worker processes (`--role all` unless a test names another) for the tests
//! that stop and restart them (SIGKILL, SIGTERM, fault points): the chaos, local-store and
//! sources tests.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_worker::settings::Settings;

use crate::driftwatch_binary;
use crate::scenario::LABEL_TIMEOUT_MS;

/// One `driftwatch run --role all` process.
pub struct Worker {
    pub child: Child,
    pub log: PathBuf,
}

impl Worker {
    /// A worker; `instance` names a static group member with a stable transactional id, `None`
    /// a dynamic member with a random one.
    pub fn start(s: &(Settings, PathBuf), name: &str, instance: Option<&str>) -> Worker {
        Worker::start_with_fault(s, name, instance, None)
    }

    /// [`Worker::start`], armed to kill itself at a fault point (`DRIFTWATCH_FAULT`, see
    /// `driftwatch_worker::fault`).
    pub fn start_with_fault(
        s: &(Settings, PathBuf),
        name: &str,
        instance: Option<&str>,
        fault: Option<&str>,
    ) -> Worker {
        Worker::start_with(s, name, instance, fault, &[])
    }

    /// [`Worker::start_with_fault`] with more environment settings (`DRIFTWATCH__…`), applied
    /// last: they override the defaults above (e.g. `DRIFTWATCH__JOIN__STATE__DIR`, or the
    /// timeouts).
    pub fn start_with(
        s: &(Settings, PathBuf),
        name: &str,
        instance: Option<&str>,
        fault: Option<&str>,
        env: &[(&str, String)],
    ) -> Worker {
        Worker::start_role(s, name, instance, "all", fault, env)
    }

    /// [`Worker::start_with`] running `role` (`driftwatch run --role <role>`).
    pub fn start_role(
        s: &(Settings, PathBuf),
        name: &str,
        instance: Option<&str>,
        role: &str,
        fault: Option<&str>,
        env: &[(&str, String)],
    ) -> Worker {
        let (s, config) = s;
        let t = &s.topics;
        let log = std::env::temp_dir().join(format!("{}-{name}.log", s.kafka.join_group_id));
        // With a state budget from the environment, each worker name keeps its local store in
        // a folder of its own (a restart under the same name wipes and rebuilds it).
        let state = crate::state_budget_from_env().map(|budget| {
            let dir = std::env::temp_dir().join(format!("{}-{name}-state", s.kafka.join_group_id));
            (dir, budget)
        });
        let file = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("worker log file");
        let child = Command::new(driftwatch_binary())
            .args(["run", "--role", role, "--config"])
            .arg(config)
            .env(
                "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS",
                &s.kafka.bootstrap_servers,
            )
            .env("DRIFTWATCH__KAFKA__JOIN_GROUP_ID", &s.kafka.join_group_id)
            .env(
                "DRIFTWATCH__KAFKA__GROUP_PROTOCOL",
                s.kafka.group_protocol.as_str(),
            )
            .env(
                "DRIFTWATCH__KAFKA__INSTANCE_ID",
                instance.unwrap_or_default(),
            )
            .env("DRIFTWATCH__TOPICS__PREDICTIONS", &t.predictions)
            .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", &t.ground_truth)
            .env("DRIFTWATCH__TOPICS__MODEL_PARTIALS", &t.model_partials)
            .env("DRIFTWATCH__TOPICS__DEAD_LETTER", &t.dead_letter)
            .env("DRIFTWATCH__MONITOR__GROUP_ID", &s.monitor.group_id)
            .env("DRIFTWATCH__TOPICS__DRIFT_EVENTS", &t.drift_events)
            .env("DRIFTWATCH__TOPICS__RETRAIN_EVENTS", &t.retrain_events)
            .env("DRIFTWATCH__TOPICS__MODEL_METRICS", &t.model_metrics)
            .env("DRIFTWATCH__HTTP__ENABLED", "false")
            .env(
                "DRIFTWATCH__JOIN__LABEL_TIMEOUT",
                format!("{LABEL_TIMEOUT_MS}ms"),
            )
            .env(
                "DRIFTWATCH__JOIN__ORPHAN_TIMEOUT",
                format!("{LABEL_TIMEOUT_MS}ms"),
            )
            .env("DRIFTWATCH__JOIN__ALLOWED_LATENESS", "30s")
            .env("DRIFTWATCH__JOIN__IDLE_TIMEOUT", "3s")
            .env("DRIFTWATCH__JOIN__FLUSH_INTERVAL", "500ms")
            .env("DRIFTWATCH_LOG", "info")
            .env("DRIFTWATCH_FAULT", fault.unwrap_or_default())
            .envs(state.iter().flat_map(|(dir, budget)| {
                [
                    ("DRIFTWATCH__JOIN__STATE__DIR", dir.display().to_string()),
                    ("DRIFTWATCH__JOIN__STATE__MEMORY_BUDGET", budget.clone()),
                ]
            }))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start driftwatch");
        Worker { child, log }
    }

    /// Waits up to `within` for the worker to kill itself at `point`, and checks that it died
    /// by a signal right after announcing that point (the log's last fault line).
    pub fn dies_at(mut self, point: &str, within: Duration) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the worker did not reach fault point {point} within {within:?}; log {}",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the worker armed at {point} ended with {status}, not SIGKILL; log {}",
            self.log.display()
        );
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| l.starts_with("driftwatch fault point reached: "));
        assert_eq!(
            last,
            Some(format!("driftwatch fault point reached: {point}").as_str()),
            "where the worker died; log {}",
            self.log.display()
        );
    }

    /// SIGKILL: no flush, no commit, no leaving the group.
    pub fn kill_nine(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and the exit status within 60 s.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "worker did not stop within 60 s of SIGTERM; log {}",
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Worker {
    /// A failing test leaves no worker behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `text` without terminal colour sequences (`ESC [ ... m`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A worker's log so far, without colour sequences.
pub fn log_text(log: &std::path::Path) -> String {
    strip_ansi(&std::fs::read_to_string(log).unwrap_or_default())
}

/// The value of `field=` on a log line, as a number.
pub fn log_field(line: &str, field: &str) -> Option<u64> {
    let (_, rest) = line.split_once(&format!(" {field}="))?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}
