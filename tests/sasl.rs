//! SASL authentication against the real broker's SASL_PLAINTEXT listener.
//!
//! `scripts/kafka start` gives the test broker a second listener with SCRAM-SHA-256,
//! SCRAM-SHA-512 and PLAIN, and a test user created when the storage was formatted; its address
//! and credentials are in the broker's state directory (`bootstrap-sasl`, `sasl-user`,
//! `sasl-password`). Records go through driftwatch's own client configurations, so these tests
//! check that `[kafka.security]` reaches every client, that a wrong password is refused with an
//! error saying so, and that the `driftwatch` binary never prints the password.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use driftwatch_tests::broker::state_dir;
use driftwatch_tests::unique;
use driftwatch_worker::clients::{
    consumer_config, create_topics, probe, producer_config, TopicSpec,
};
use driftwatch_worker::security::{SaslMechanism, SecurityProtocol, SecuritySettings};
use driftwatch_worker::settings::KafkaSettings;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

struct SaslBroker {
    bootstrap: String,
    user: String,
    password_file: PathBuf,
}

fn sasl_broker() -> SaslBroker {
    let dir = state_dir();
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|e| {
                panic!(
                    "no SASL test broker ({}: {e}): run the tests with scripts/test, or `scripts/kafka clean && scripts/kafka start`",
                    dir.join(name).display()
                )
            })
    };
    SaslBroker {
        bootstrap: read("bootstrap-sasl"),
        user: read("sasl-user"),
        password_file: dir.join("sasl-password"),
    }
}

fn password(b: &SaslBroker) -> String {
    std::fs::read_to_string(&b.password_file)
        .expect("password file")
        .trim()
        .to_string()
}

fn sasl_settings(b: &SaslBroker, mechanism: SaslMechanism) -> KafkaSettings {
    KafkaSettings {
        bootstrap_servers: b.bootstrap.clone(),
        security: SecuritySettings {
            protocol: SecurityProtocol::SaslPlaintext,
            sasl_mechanism: Some(mechanism),
            sasl_username: Some(b.user.clone()),
            // From the file, as a Kubernetes secret would be mounted.
            sasl_password_file: Some(b.password_file.clone()),
            ..SecuritySettings::default()
        },
        ..KafkaSettings::default()
    }
}

async fn round_trip(mechanism: SaslMechanism) {
    let b = sasl_broker();
    let s = sasl_settings(&b, mechanism);
    s.security.validate().expect("valid security settings");
    let topic = unique(&format!("sasl-{}", mechanism.as_str().to_lowercase()));
    // The admin client authenticates too: the topic is created over the SASL listener.
    create_topics(
        &s,
        &[TopicSpec {
            name: topic.clone(),
            partitions: 2,
            configs: vec![],
        }],
    )
    .await
    .expect("create topic over SASL");

    let producer: FutureProducer = producer_config(&s).create().expect("producer");
    let sent: Vec<String> = (0..5).map(|i| format!("record-{i}")).collect();
    for (i, payload) in sent.iter().enumerate() {
        let key = format!("key-{i}");
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(payload),
                Duration::from_secs(20),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("{mechanism:?}: delivery failed: {e}"));
    }

    let consumer: StreamConsumer = consumer_config(&s, &unique("sasl-group"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while got.len() < sent.len() {
        let m = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("{mechanism:?}: only {got:?} consumed in 60 s"))
            .expect("consume");
        got.push(String::from_utf8(m.payload().expect("payload").to_vec()).expect("utf-8"));
    }
    got.sort();
    assert_eq!(got, sent, "{mechanism:?}");
}

#[tokio::test]
async fn scram_sha_256_produces_and_consumes() {
    round_trip(SaslMechanism::ScramSha256).await;
}

#[tokio::test]
async fn scram_sha_512_produces_and_consumes() {
    round_trip(SaslMechanism::ScramSha512).await;
}

#[tokio::test]
async fn plain_produces_and_consumes() {
    round_trip(SaslMechanism::Plain).await;
}

#[tokio::test]
async fn wrong_password_is_refused_with_an_authentication_error() {
    driftwatch_tests::init_logging();
    let b = sasl_broker();
    let good = sasl_settings(&b, SaslMechanism::ScramSha256);
    let brokers = tokio::task::spawn_blocking(move || probe(&good, Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the right password is accepted");
    assert_eq!(brokers, 1);

    let wrong = std::env::temp_dir().join(unique("driftwatch-wrong-password"));
    std::fs::write(&wrong, "not-the-password\n").expect("write");
    let mut s = sasl_settings(&b, SaslMechanism::ScramSha256);
    s.security.sasl_password_file = Some(wrong.clone());
    let err = tokio::task::spawn_blocking(move || probe(&s, Duration::from_secs(10)))
        .await
        .expect("join")
        .expect_err("a wrong password must be refused");
    let _ = std::fs::remove_file(&wrong);
    let text = err.to_string();
    assert!(
        text.contains("authentication to") && text.contains("SCRAM-SHA-256"),
        "the error should say authentication failed: {text}"
    );
    assert!(text.contains(&b.user), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(!err.is_retryable(), "{text}");
}

#[tokio::test]
async fn check_config_over_sasl_never_prints_the_password() {
    let b = sasl_broker();
    let pw = password(&b);
    let s = sasl_settings(&b, SaslMechanism::ScramSha512);
    let (pt, gt) = (unique("sasl-predictions"), unique("sasl-ground-truth"));
    let (partials, dead) = (unique("sasl-partials"), unique("sasl-dead"));
    let spec = |name: &str| TopicSpec {
        name: name.to_string(),
        partitions: 3,
        configs: vec![],
    };
    create_topics(&s, &[spec(&pt), spec(&gt), spec(&partials), spec(&dead)])
        .await
        .expect("topics");
    let bin = tokio::task::spawn_blocking(driftwatch_tests::driftwatch_binary)
        .await
        .expect("join");

    let run = |password_env: Option<&str>| {
        let mut cmd = Command::new(&bin);
        cmd.arg("check-config")
            .env_remove("DRIFTWATCH_CONFIG")
            .env("DRIFTWATCH_LOG", "debug")
            .env("DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS", &b.bootstrap)
            .env("DRIFTWATCH__KAFKA__SECURITY__PROTOCOL", "sasl_plaintext")
            .env(
                "DRIFTWATCH__KAFKA__SECURITY__SASL_MECHANISM",
                "SCRAM-SHA-512",
            )
            .env("DRIFTWATCH__KAFKA__SECURITY__SASL_USERNAME", &b.user)
            .env("DRIFTWATCH__TOPICS__PREDICTIONS", &pt)
            .env("DRIFTWATCH__TOPICS__GROUND_TRUTH", &gt)
            .env("DRIFTWATCH__TOPICS__MODEL_PARTIALS", &partials)
            .env("DRIFTWATCH__TOPICS__DEAD_LETTER", &dead);
        match password_env {
            Some(p) => cmd.env("DRIFTWATCH__KAFKA__SECURITY__SASL_PASSWORD", p),
            None => cmd.env(
                "DRIFTWATCH__KAFKA__SECURITY__SASL_PASSWORD_FILE",
                &b.password_file,
            ),
        };
        let out = cmd.output().expect("run driftwatch");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    };

    for source in [Some(pw.as_str()), None] {
        let (status, text) = run(source);
        assert!(status.success(), "{status}: {text}");
        assert!(text.contains("co-partitioned: 3 partitions"), "{text}");
        assert!(!text.contains(&pw), "the password was printed:\n{text}");
    }

    let wrong = format!("{pw}-wrong");
    let (status, text) = run(Some(&wrong));
    assert!(!status.success(), "a wrong password passed: {text}");
    assert!(!text.contains(&pw), "the password was printed:\n{text}");
}
