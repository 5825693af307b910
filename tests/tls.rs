//! TLS against the real broker: the pipeline over TLS, mutual TLS and SASL_SSL, and the
//! failures an operator meets first.
//!
//! `scripts/kafka start` gives the test broker three TLS listeners on certificates of a test CA
//! (`scripts/kafka-tls`): SSL (`bootstrap-ssl`), SSL with client certificates required
//! (`bootstrap-mtls`) and SASL_SSL with SCRAM-SHA-512 (`bootstrap-sasl-ssl`); the CA, a client
//! certificate with an encrypted key, an expired client certificate and a second, unrelated CA
//! are in `tls/` of its state directory. Every client goes through driftwatch's own
//! `[kafka.security]` settings.
//!
//! - Both stages run the scenario over TLS, mutual TLS and SASL_SSL (in the test's process):
//!   the committed partials equal the offline reference exactly, the monitor's outputs agree.
//! - `driftwatch run` over SASL_SSL with a client certificate and an encrypted key, logging at
//!   debug: its partials equal the reference, and no line of its log holds the SASL password,
//!   the key's password or any line of the key's PEM body.
//! - `driftwatch run` with the wrong CA, or with an expired client certificate on the mutual-TLS
//!   listener, stops at start-up with a message naming the setting and the file; without a
//!   client certificate the mutual-TLS listener's refusal says one is required.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use driftwatch_tests::broker::state_dir;
use driftwatch_tests::monitor_outputs::MONITOR_TOML;
use driftwatch_tests::outcomes::{assert_reference, Outcomes, PartialsReader};
use driftwatch_tests::scenario::{counters_by_model, produce_records, Scenario, LABEL_TIMEOUT_MS};
use driftwatch_tests::stages::{run_disrupted, scenario_settings_with};
use driftwatch_tests::{driftwatch_binary, KillOnDrop};
use driftwatch_worker::clients::probe;
use driftwatch_worker::security::{SaslMechanism, SecurityProtocol, SecuritySettings};
use driftwatch_worker::settings::{KafkaSettings, Settings};

const PARTITIONS: i32 = 2;

/// The TLS listeners and files of the test broker.
struct TlsBroker {
    ssl: String,
    mtls: String,
    sasl_ssl: String,
    tls: PathBuf,
    user: String,
    password_file: PathBuf,
}

/// `None` without a broker (the test is skipped, or fails under CI by the common rule).
fn tls_broker() -> Option<TlsBroker> {
    if !driftwatch_tests::broker_available() {
        return None;
    }
    let dir = state_dir();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| {
                panic!(
                    "the test broker has no TLS listeners ({}: {e}): run the tests with \
                     scripts/test, or `scripts/kafka stop && scripts/kafka start`",
                    dir.join(name).display()
                )
            })
    };
    Some(TlsBroker {
        ssl: read("bootstrap-ssl"),
        mtls: read("bootstrap-mtls"),
        sasl_ssl: read("bootstrap-sasl-ssl"),
        tls: dir.join("tls"),
        user: read("sasl-user"),
        password_file: dir.join("sasl-password"),
    })
}

impl TlsBroker {
    fn file(&self, name: &str) -> PathBuf {
        self.tls.join(name)
    }

    /// TLS: the broker's certificate checked against the test CA, no client certificate.
    fn tls(&self) -> KafkaSettings {
        KafkaSettings {
            bootstrap_servers: self.ssl.clone(),
            security: SecuritySettings {
                protocol: SecurityProtocol::Ssl,
                ssl_ca_location: Some(self.file("ca.pem")),
                ..SecuritySettings::default()
            },
            ..KafkaSettings::default()
        }
    }

    /// Mutual TLS: the client certificate, its key encrypted, the key's password from a file.
    fn mtls(&self) -> KafkaSettings {
        let mut k = self.tls();
        k.bootstrap_servers = self.mtls.clone();
        k.security.ssl_certificate_location = Some(self.file("client.pem"));
        k.security.ssl_key_location = Some(self.file("client-key.pem"));
        k.security.ssl_key_password_file = Some(self.file("client-key-password"));
        k
    }

    /// SASL_SSL with SCRAM-SHA-512, the password from a file.
    fn sasl_ssl(&self) -> KafkaSettings {
        let mut k = self.tls();
        k.bootstrap_servers = self.sasl_ssl.clone();
        k.security.protocol = SecurityProtocol::SaslSsl;
        k.security.sasl_mechanism = Some(SaslMechanism::ScramSha512);
        k.security.sasl_username = Some(self.user.clone());
        k.security.sasl_password_file = Some(self.password_file.clone());
        k
    }
}

fn secret(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Both stages over `kafka`, the scenario's committed partials and monitor outputs exact.
async fn pipeline_is_exact_over(kafka: KafkaSettings, seed: u64) {
    kafka.security.validate().expect("valid security settings");
    let s = scenario_settings_with(kafka, PARTITIONS).await;
    let now = driftwatch_tests::now_ms();
    let scenario = Scenario::generate(seed, 40_000, now - 2 * 3_600_000);
    let (stats, _) = run_disrupted(&s, &scenario, PARTITIONS, || {}).await;
    let by_model = counters_by_model(std::slice::from_ref(&stats));
    assert_eq!(by_model, scenario.expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_is_exact_over_tls() {
    let Some(b) = tls_broker() else { return };
    pipeline_is_exact_over(b.tls(), 51).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_is_exact_over_mutual_tls() {
    let Some(b) = tls_broker() else { return };
    pipeline_is_exact_over(b.mtls(), 52).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_is_exact_over_sasl_ssl() {
    let Some(b) = tls_broker() else { return };
    pipeline_is_exact_over(b.sasl_ssl(), 53).await;
}

/// `driftwatch run --role all` for `s` with `[kafka.security]` in the environment, its log
/// (debug) written to a file.
fn start_worker(s: &Settings, config: &Path, log: &Path) -> KillOnDrop {
    let k = &s.kafka;
    let sec = &k.security;
    let t = &s.topics;
    let file = std::fs::File::create(log).expect("worker log file");
    let mut cmd = Command::new(driftwatch_binary());
    cmd.args(["run", "--role", "all", "--config"])
        .arg(config)
        .env_remove("DRIFTWATCH_CONFIG")
        .env("DRIFTWATCH_LOG", "debug")
        .env("DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS", &k.bootstrap_servers)
        .env("DRIFTWATCH__KAFKA__JOIN_GROUP_ID", &k.join_group_id)
        .env(
            "DRIFTWATCH__KAFKA__SECURITY__PROTOCOL",
            sec.protocol.as_str(),
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
        .stdout(Stdio::null())
        .stderr(file);
    let paths = [
        ("SSL_CA_LOCATION", &sec.ssl_ca_location),
        ("SSL_CERTIFICATE_LOCATION", &sec.ssl_certificate_location),
        ("SSL_KEY_LOCATION", &sec.ssl_key_location),
        ("SSL_KEY_PASSWORD_FILE", &sec.ssl_key_password_file),
        ("SASL_PASSWORD_FILE", &sec.sasl_password_file),
    ];
    for (name, path) in paths {
        if let Some(p) = path {
            cmd.env(format!("DRIFTWATCH__KAFKA__SECURITY__{name}"), p);
        }
    }
    if let Some(m) = sec.sasl_mechanism {
        cmd.env("DRIFTWATCH__KAFKA__SECURITY__SASL_MECHANISM", m.as_str());
    }
    if let Some(u) = &sec.sasl_username {
        cmd.env("DRIFTWATCH__KAFKA__SECURITY__SASL_USERNAME", u);
    }
    KillOnDrop(cmd.spawn().expect("start driftwatch"))
}

/// Waits for a worker that should stop by itself; kills it after two minutes (a hang guard,
/// not a timing assertion).
fn wait_for_exit(mut w: KillOnDrop, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(Some(status)) = w.try_wait() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "driftwatch run did not stop by itself; log {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SIGTERM, and the exit status.
fn terminate(w: KillOnDrop, log: &Path) -> std::process::ExitStatus {
    let pid = w.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    wait_for_exit(w, log)
}

/// Fresh topics and groups for a `driftwatch run` over `kafka`, and its configuration file.
async fn worker_settings(kafka: KafkaSettings) -> (Settings, PathBuf) {
    let s = scenario_settings_with(kafka, PARTITIONS).await;
    let config = std::env::temp_dir().join(format!("{}.toml", s.monitor.group_id));
    std::fs::write(&config, MONITOR_TOML).expect("worker configuration file");
    (s, config)
}

/// The PEM body lines of a key file (the base64 between the BEGIN and END lines).
fn pem_body(path: &Path) -> Vec<String> {
    secret(path)
        .lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 16)
        .map(str::to_string)
        .collect()
}

/// Asserts that no line of `log` holds any of `secrets`, naming the kind found.
fn assert_no_secret(log: &str, secrets: &[(&str, String)]) {
    for (kind, value) in secrets {
        assert!(!value.is_empty(), "empty {kind}");
        if let Some(line) = log.lines().find(|l| l.contains(value.as_str())) {
            panic!("the {kind} appears in the worker's log: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driftwatch_run_over_sasl_ssl_never_logs_a_password_or_key() {
    let Some(b) = tls_broker() else { return };
    let mut kafka = b.sasl_ssl();
    // The SASL_SSL listener does not ask for a client certificate, but the key is still loaded
    // (decrypted with its password) when each client is created.
    kafka.security.ssl_certificate_location = Some(b.file("client.pem"));
    kafka.security.ssl_key_location = Some(b.file("client-key.pem"));
    kafka.security.ssl_key_password_file = Some(b.file("client-key-password"));
    kafka.security.validate().expect("valid security settings");
    let (s, config) = worker_settings(kafka).await;
    let log = std::env::temp_dir().join(format!("{}.log", s.kafka.join_group_id));
    let worker = tokio::task::block_in_place(|| start_worker(&s, &config, &log));

    let now = driftwatch_tests::now_ms();
    let scenario = Scenario::generate(54, 40_000, now - 2 * 3_600_000);
    produce_records(&s, &scenario.records).await;
    let reference = Outcomes::reference(&scenario);
    tokio::task::block_in_place(|| {
        let mut reader = PartialsReader::new(&s, PARTITIONS);
        reader.read_until(reference.total(), Duration::from_secs(180));
        assert_reference(&reader.seen, &reference, std::slice::from_ref(&log));
        let status = terminate(worker, &log);
        assert!(status.success(), "{status}; log {}", log.display());
    });

    let text = std::fs::read_to_string(&log).expect("worker log");
    assert!(
        text.lines().count() > 10,
        "the worker logged almost nothing: {text}"
    );
    let mut secrets = vec![
        ("SASL password", secret(&b.password_file)),
        ("key password", secret(&b.file("client-key-password"))),
    ];
    secrets.extend(
        pem_body(&b.file("client-key.pem"))
            .into_iter()
            .map(|l| ("private key's PEM body", l)),
    );
    assert_no_secret(&text, &secrets);
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&config);
}

/// `driftwatch run` over `kafka`, expected to stop at start-up: its status and log. Its topics
/// are created over the working TLS listener (the settings under test cannot).
async fn run_expecting_failure(
    b: &TlsBroker,
    kafka: KafkaSettings,
) -> (std::process::ExitStatus, String) {
    let (mut s, config) = worker_settings(b.tls()).await;
    s.kafka = KafkaSettings {
        join_group_id: s.kafka.join_group_id.clone(),
        ..kafka
    };
    let log = std::env::temp_dir().join(format!("{}.log", s.kafka.join_group_id));
    let status = tokio::task::block_in_place(|| {
        let w = start_worker(&s, &config, &log);
        wait_for_exit(w, &log)
    });
    let text = std::fs::read_to_string(&log).expect("worker log");
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_file(&config);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_stops_the_worker_at_start_up_naming_the_setting() {
    let Some(b) = tls_broker() else { return };
    let mut kafka = b.tls();
    kafka.security.ssl_ca_location = Some(b.file("other-ca.pem"));
    let (status, log) = run_expecting_failure(&b, kafka).await;
    assert!(!status.success(), "a worker with the wrong CA ran: {log}");
    assert!(
        log.contains("kafka.security.ssl_ca_location") && log.contains("other-ca.pem"),
        "the error should name the CA setting and file: {log}"
    );
    assert!(log.contains("certificate verify failed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_client_certificate_stops_the_worker_at_start_up() {
    let Some(b) = tls_broker() else { return };
    let mut kafka = b.mtls();
    kafka.security.ssl_certificate_location = Some(b.file("expired-client.pem"));
    kafka.security.ssl_key_location = Some(b.file("expired-client-key.pem"));
    kafka.security.ssl_key_password_file = None;
    let (status, log) = run_expecting_failure(&b, kafka).await;
    assert!(
        !status.success(),
        "a worker with an expired certificate ran: {log}"
    );
    assert!(
        log.contains("kafka.security.ssl_certificate_location")
            && log.contains("expired-client.pem"),
        "the error should name the certificate setting and file: {log}"
    );
    let key: Vec<(&str, String)> = pem_body(&b.file("expired-client-key.pem"))
        .into_iter()
        .map(|l| ("private key's PEM body", l))
        .collect();
    assert_no_secret(&log, &key);
}

#[tokio::test]
async fn mutual_tls_without_a_client_certificate_says_one_is_required() {
    let Some(b) = tls_broker() else { return };
    let mut kafka = b.tls();
    kafka.bootstrap_servers = b.mtls.clone();
    let err = tokio::task::spawn_blocking(move || probe(&kafka, Duration::from_secs(20)))
        .await
        .expect("join")
        .expect_err("the mutual-TLS listener must refuse a client without a certificate");
    let text = err.to_string();
    assert!(
        text.contains("requires a client certificate"),
        "the error should say a client certificate is required: {text}"
    );
    assert!(!err.is_retryable(), "{text}");
    // And with one, the same listener answers.
    let brokers = tokio::task::spawn_blocking(move || probe(&b.mtls(), Duration::from_secs(20)))
        .await
        .expect("join")
        .expect("the client certificate is accepted");
    assert_eq!(brokers, 1);
}
