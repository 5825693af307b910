//! A catalogue of malformed input on the real broker: every kind is dead-lettered once, under
//! its error kind, and the join stage keeps working.
//!
//! One table, [`catalogue`]: a name, the input topic, the bytes, and the `driftwatch.error.kind`
//! the dead letter must carry. The records go to both inputs of a join stage (exactly-once), one
//! after the other and followed by a valid prediction and its label; then
//!
//! - the dead-letter topic, read committed, holds exactly one record per case (keyed by the
//!   case's name) with the expected kind and the source topic it came from;
//! - the join counted exactly as many dead letters as there are cases, and nothing else but
//!   the valid pair, which it matched: the stage is up and joining after all of them.

use std::collections::BTreeMap;
use std::time::Duration;

use driftwatch_codec::encode_framed;
use driftwatch_codec::wire::{put_long, put_str};
use driftwatch_tests::scenario::{produce_records, Record, Side};
use driftwatch_tests::{create_topic, now_ms, settings, unique};
use driftwatch_worker::clients::consumer_config;
use driftwatch_worker::pipeline::{Pipeline, Role};
use driftwatch_worker::settings::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::Message;

/// `join.max_message_bytes` of this test.
const LIMIT: usize = 4096;

/// A Prediction datum written field by field (`to_avro` refuses what the join must reject).
fn avro_prediction(id: &str, timestamp: i64) -> Vec<u8> {
    let mut out = prediction_head_of(id, timestamp);
    put_long(&mut out, 0); // features: empty map
    put_long(&mut out, 1); // predicted_label: string
    put_str(&mut out, "cat");
    put_long(&mut out, 0); // predicted_value: null
    put_long(&mut out, 0); // scores: null
    put_long(&mut out, 0); // tags: empty map
    out
}

/// A GroundTruth datum written field by field.
fn avro_label(id: &str, timestamp: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, id);
    put_long(&mut out, 1); // model_id: string
    put_str(&mut out, "catalogue");
    put_long(&mut out, timestamp);
    put_long(&mut out, 1); // label: string
    put_str(&mut out, "cat");
    put_long(&mut out, 0); // value: null
    out
}

fn prediction_head_of(id: &str, timestamp: i64) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(&mut out, id);
    put_str(&mut out, "catalogue");
    put_str(&mut out, "v1");
    put_long(&mut out, timestamp);
    out
}

/// The head of a Prediction datum up to and including its timestamp.
fn prediction_head(timestamp: i64) -> Vec<u8> {
    prediction_head_of("req-head", timestamp)
}

fn json_prediction(timestamp: &str) -> Vec<u8> {
    json_prediction_with("req-json", timestamp)
}

fn json_prediction_with(id: &str, timestamp: &str) -> Vec<u8> {
    format!(
        r#"{{"request_id":"{id}","model_id":"catalogue","model_version":"v1","timestamp":{timestamp},"features":{{}},"predicted_label":"cat","predicted_value":null,"scores":null,"tags":{{}}}}"#
    )
    .into_bytes()
}

/// (case, input, payload, expected error kind).
fn catalogue(now: i64) -> Vec<(&'static str, Side, Vec<u8>, &'static str)> {
    use Side::{Labels as L, Predictions as P};
    let valid = avro_prediction("req-valid-shape", now);
    let mut bad_utf8 = avro_prediction("XX", now);
    // Byte 0 is the length of the request id (2), bytes 1 and 2 its text.
    bad_utf8[1] = 0xff;
    bad_utf8[2] = 0xfe;
    let mut label_bad_utf8 = avro_label("XX", now);
    label_bad_utf8[1] = 0xc3;
    label_bad_utf8[2] = 0x28;

    let mut wrong_union = prediction_head(now);
    put_long(&mut wrong_union, 0); // no features
    put_long(&mut wrong_union, 7); // predicted_label: a union of two branches, branch 7
    let mut feature_union = prediction_head(now);
    put_long(&mut feature_union, 1); // one feature
    put_str(&mut feature_union, "x");
    put_long(&mut feature_union, 9); // its value: null, double or string; branch 9
    let mut huge_map = prediction_head(now);
    put_long(&mut huge_map, 1 << 40); // a block claiming 2^40 features, then nothing
    let mut negative_block = prediction_head(now);
    put_long(&mut negative_block, -(1 << 40)); // negative count: a byte size follows
    put_long(&mut negative_block, 1 << 50);
    let mut negative_length = Vec::new();
    put_long(&mut negative_length, -5);
    let deep = format!(
        r#"{{"request_id":"req-deep","model_id":"catalogue","model_version":"v1","timestamp":{now},"features":{}{}}}"#,
        "[".repeat(100_000 / 2),
        "]".repeat(100_000 / 2)
    );
    let mut deep = deep.into_bytes();
    deep.truncate(LIMIT - 1); // under the size limit: the parser sees the nesting

    vec![
        ("empty", P, vec![], "truncated"),
        ("truncated", P, valid[..valid.len() / 2].to_vec(), "truncated"),
        ("oversized", P, vec![0u8; LIMIT + 1], "oversized"),
        (
            "wrong_magic_byte",
            P,
            [&[0x01u8, 0, 0, 0, 1][..], &valid].concat(),
            "invalid_data",
        ),
        (
            "unknown_schema_id",
            P,
            encode_framed(424_242, &valid),
            "unknown_schema_id",
        ),
        ("short_frame_header", P, vec![0x00, 0x00, 0x01], "invalid_data"),
        ("bad_utf8_request_id", P, bad_utf8, "invalid_utf8"),
        ("wrong_union_branch", P, wrong_union, "invalid_data"),
        ("feature_union_out_of_range", P, feature_union, "invalid_data"),
        ("huge_map", P, huge_map, "invalid_data"),
        ("negative_block_size", P, negative_block, "truncated"),
        ("negative_string_length", P, negative_length, "invalid_data"),
        ("varint_overflow", P, vec![0xff; 11], "invalid_data"),
        (
            "random_bytes",
            P,
            vec![0x9d, 0x13, 0xfe, 0x77, 0x01, 0xc4],
            "invalid_data",
        ),
        // A bare datum with an empty request id starts with 0x00, the framing's magic byte,
        // so it reads as framed with an unknown schema id; the JSON decoder refuses an empty
        // id itself ("empty request_id").
        (
            "empty_request_id_avro",
            P,
            avro_prediction("", now),
            "unknown_schema_id",
        ),
        (
            "empty_request_id",
            P,
            json_prediction_with("", &now.to_string()),
            "invalid_data",
        ),
        (
            "negative_timestamp",
            P,
            avro_prediction("req-negative", -5),
            "absurd_timestamp",
        ),
        (
            "future_timestamp",
            P,
            avro_prediction("req-future", 32_503_680_000_000),
            "absurd_timestamp",
        ),
        ("json_invalid", P, br#"{"request_id": "#.to_vec(), "json"),
        ("json_nan", P, json_prediction("NaN"), "json"),
        ("json_infinity", P, json_prediction("Infinity"), "json"),
        ("json_wrong_type", P, json_prediction(r#""yesterday""#), "json"),
        (
            "json_missing_field",
            P,
            br#"{"request_id":"req-missing","timestamp":1}"#.to_vec(),
            "missing_field",
        ),
        (
            "json_bad_utf8",
            P,
            b"{\"request_id\":\"\xff\xfe\",\"model_id\":\"m\"}".to_vec(),
            "json",
        ),
        ("json_deep_nesting", P, deep, "json"),
        ("label_empty", L, vec![], "truncated"),
        (
            "label_truncated",
            L,
            avro_label("req-label-cut", now)[..6].to_vec(),
            "truncated",
        ),
        ("label_bad_utf8", L, label_bad_utf8, "invalid_utf8"),
        (
            "label_empty_request_id",
            L,
            format!(r#"{{"request_id":"","model_id":"catalogue","timestamp":{now},"label":"cat","value":null}}"#)
                .into_bytes(),
            "invalid_data",
        ),
        (
            "label_future_timestamp",
            L,
            avro_label("req-label-future", 32_503_680_000_000),
            "absurd_timestamp",
        ),
        ("label_json_invalid", L, br#"{"request_id":"#.to_vec(), "json"),
    ]
}

/// Every committed dead letter: key → (error kind, source topic).
fn dead_letters(s: &Settings, expected: usize) -> BTreeMap<String, Vec<(String, String)>> {
    let consumer: BaseConsumer = consumer_config(&s.kafka, &unique("catalogue-reader"))
        .create()
        .expect("consumer");
    consumer
        .subscribe(&[&s.topics.dead_letter])
        .expect("subscribe");
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut read = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut quiet_until = None;
    loop {
        let now = std::time::Instant::now();
        if now > deadline || quiet_until.is_some_and(|q| now > q) {
            return out;
        }
        let Some(m) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let m = m.expect("consume");
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        out.entry(key).or_default().push((
            header("driftwatch.error.kind"),
            header("driftwatch.source.topic"),
        ));
        read += 1;
        if read >= expected {
            // Then a little longer, so that a dead letter written twice would show.
            quiet_until.get_or_insert(now + Duration::from_secs(5));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformed_kind_is_dead_lettered_once_with_its_kind() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    driftwatch_tests::init_logging();
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    s.kafka.join_group_id = unique("join");
    s.topics.predictions = unique("predictions");
    s.topics.ground_truth = unique("ground-truth");
    s.topics.model_partials = unique("partials");
    s.topics.dead_letter = unique("dead-letter");
    for t in [
        &s.topics.predictions,
        &s.topics.ground_truth,
        &s.topics.model_partials,
        &s.topics.dead_letter,
    ] {
        create_topic(t, 1).await;
    }
    s.join.max_message_bytes = LIMIT;
    s.join.flush_interval = Duration::from_millis(500);

    let now = now_ms();
    let cases = catalogue(now);
    assert!(cases.len() >= 20, "the catalogue has {} kinds", cases.len());
    let mut records: Vec<Record> = cases
        .iter()
        .map(|(name, side, payload, _)| Record {
            side: *side,
            key: (*name).to_string(),
            payload: payload.clone(),
            time: now,
        })
        .collect();
    // After all of them, a valid pair: the stage must still join it.
    records.push(Record {
        side: Side::Predictions,
        key: "req-after".into(),
        payload: avro_prediction("req-after", now),
        time: now,
    });
    records.push(Record {
        side: Side::Labels,
        key: "req-after".into(),
        payload: avro_label("req-after", now + 1),
        time: now,
    });

    let running = Pipeline::new(&s, Role::Join).expect("join stage").start();
    let join = running.handles().join.clone().expect("the join stage runs");
    produce_records(&s, &records).await;

    let seen = tokio::task::block_in_place(|| dead_letters(&s, cases.len()));
    // The stage is up: it matched the valid pair that came after every malformed record.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let matched = loop {
        let m: u64 = join.stats().per_model.values().map(|c| c.matched).sum();
        if m >= 1 || tokio::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let stats = join.stats();
    running
        .stop()
        .await
        .expect("the join stage ends without error");

    let mut wrong = Vec::new();
    for (name, side, _, kind) in &cases {
        let topic = match side {
            Side::Predictions => &s.topics.predictions,
            Side::Labels => &s.topics.ground_truth,
        };
        let want = vec![((*kind).to_string(), topic.clone())];
        let got = seen.get(*name).cloned().unwrap_or_default();
        if got != want {
            wrong.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    let extra: Vec<&String> = seen
        .keys()
        .filter(|k| !cases.iter().any(|(n, ..)| n == k))
        .collect();
    assert!(
        wrong.is_empty() && extra.is_empty(),
        "dead letters differ from the catalogue:\n{}\nunexpected keys: {extra:?}",
        wrong.join("\n")
    );
    let dead: u64 = stats.per_model.values().map(|c| c.dead_lettered).sum();
    assert_eq!(dead, cases.len() as u64, "dead letters counted: {stats:?}");
    assert_eq!(
        matched, 1,
        "the valid pair after the catalogue was not matched"
    );
}
