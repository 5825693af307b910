//! The sources stage end to end on the real broker: Seldon Core 2 model topics (protobuf
//! `ModelInferRequest` / `ModelInferResponse` built from the `.proto`'s messages, the request
//! on `.inputs` and the response on `.outputs`, on crossed partitions) and a KServe
//! inference-logger topic (binary-mode CloudEvents of the logger docs' v1 example, and one
//! structured-mode event), with bad input of each kind, read by `driftwatch run --role
//! sources` as its own process; the join and monitor run in the test's process and join the
//! predictions it writes with their labels.
//!
//! The sources worker is SIGKILLed once mid-run, while requests wait for responses that are
//! produced only after the restart, and restarted. Afterwards, read as `read_committed`
//! consumers and from the stages:
//! - the predictions topic holds exactly one prediction per paired request and response,
//!   under its request id (none lost, none twice: the waiting requests came back from the
//!   changelog);
//! - every bad input is on the dead-letter topic exactly once, with its reason;
//! - the join matched every prediction with its label, and counted nothing else;
//! - the restarted worker's `/metrics` accounts for every half it read: a lone request from
//!   before the kill expired (restored, then expired by a later record's event time), a
//!   duplicate response, the halves still waiting.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use driftwatch_codec::{encode_ground_truth, from_avro};
use driftwatch_core::{GroundTruth, Prediction};
use driftwatch_oip::proto::{
    InferTensor, InferTensorContents, ModelInferRequest, ModelInferResponse,
};
use driftwatch_tests::monitor_outputs::create_topics_of;
use driftwatch_tests::stages::Stages;
use driftwatch_tests::worker::Worker;
use driftwatch_tests::{create_topic, settings, unique};
use driftwatch_worker::settings::Settings;
use prost::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};

/// Partitions of every source topic: a request and its response land on different ones.
const SOURCE_PARTITIONS: i32 = 2;
/// Seldon pairs before the kill, pairs whose response comes after it, pairs after it.
const SELDON_BEFORE: usize = 40;
const SELDON_ACROSS: usize = 10;
const SELDON_AFTER: usize = 40;
/// KServe pairs before and after the kill (binary mode), and one structured-mode pair.
const KSERVE_BEFORE: usize = 20;
const KSERVE_AFTER: usize = 20;

fn config_toml(namespace: &str, kserve_topic: &str) -> String {
    format!(
        r#"
[[sources]]
name = "seldon-iris"
pair_wait = "5s"
[sources.seldon]
namespace = "{namespace}"
[sources.mapping]
model_id = {{ from = "topic" }}
model_version = {{ from = "fixed", value = "1" }}
features = [{{ tensor = "x", columns = ["a", "b"] }}]
prediction = {{ tensor = "p", as = "label", labels = ["no", "yes"] }}

[[sources]]
name = "kserve-iris"
pair_wait = "5s"
[sources.kserve]
topics = ["{kserve_topic}"]
[sources.mapping]
model_id = {{ from = "header", name = "ce_inferenceservicename" }}
model_version = {{ from = "fixed", value = "1" }}
features = [{{ tensor = "instances", columns = ["sl", "sw", "pl", "pw"] }}]
prediction = {{ tensor = "predictions", as = "label" }}
"#
    )
}

fn tensor(name: &str, shape: Vec<i64>, contents: InferTensorContents) -> InferTensor {
    InferTensor {
        name: name.into(),
        datatype: if contents.int64_contents.is_empty() {
            "FP64".into()
        } else {
            "INT64".into()
        },
        shape,
        contents: Some(contents),
    }
}

fn seldon_request(i: usize, values: usize) -> Vec<u8> {
    ModelInferRequest {
        inputs: vec![tensor(
            "x",
            vec![1, 2],
            InferTensorContents {
                fp64_contents: (0..values).map(|v| (i + v) as f64).collect(),
                ..Default::default()
            },
        )],
        ..Default::default()
    }
    .encode_to_vec()
}

fn seldon_response(i: usize) -> Vec<u8> {
    ModelInferResponse {
        outputs: vec![tensor(
            "p",
            vec![1],
            InferTensorContents {
                int64_contents: vec![(i % 2) as i64],
                ..Default::default()
            },
        )],
        ..Default::default()
    }
    .encode_to_vec()
}

/// One record to produce.
struct Out {
    topic: String,
    partition: i32,
    headers: Vec<(&'static str, String)>,
    payload: Vec<u8>,
    time: i64,
}

struct Topics {
    inputs: String,
    outputs: String,
    kserve: String,
}

impl Topics {
    fn seldon_pair(&self, id: &str, i: usize, time: i64) -> [Out; 2] {
        let h = vec![("x-request-id", id.to_string())];
        // Request and response on different partitions: only one member holding both pairs them.
        let p = (i % 2) as i32;
        [
            Out {
                topic: self.inputs.clone(),
                partition: p,
                headers: h.clone(),
                payload: seldon_request(i, 2),
                time,
            },
            self.seldon_response(id, i, time + 20),
        ]
    }

    fn seldon_response(&self, id: &str, i: usize, time: i64) -> Out {
        Out {
            topic: self.outputs.clone(),
            partition: 1 - (i % 2) as i32,
            headers: vec![("x-request-id", id.to_string())],
            payload: seldon_response(i),
            time,
        }
    }

    fn kserve_event(&self, id: &str, request: bool, i: usize, time: i64) -> Out {
        let ty = if request {
            driftwatch_oip::kserve::REQUEST_TYPE
        } else {
            driftwatch_oip::kserve::RESPONSE_TYPE
        };
        let payload = if request {
            format!(r#"{{"instances": [[6.8, 2.8, 4.8, {}.4]]}}"#, i % 3)
        } else {
            format!(r#"{{"predictions": [{}]}}"#, i % 3)
        };
        Out {
            topic: self.kserve.clone(),
            partition: i32::from(!request) ^ (i % 2) as i32,
            headers: vec![
                ("ce_specversion", "1.0".into()),
                ("ce_id", id.into()),
                ("ce_type", ty.into()),
                ("ce_source", "http://localhost:9081/".into()),
                ("ce_inferenceservicename", "sklearn-iris".into()),
                ("content-type", "application/json".into()),
            ],
            payload: payload.into_bytes(),
            time,
        }
    }
}

async fn produce(s: &Settings, records: &[Out]) {
    let producer: FutureProducer = driftwatch_worker::clients::producer_config(&s.kafka)
        .create()
        .expect("producer");
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in &r.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_str()),
            });
        }
        let record = FutureRecord::<(), [u8]>::to(&r.topic)
            .partition(r.partition)
            .payload(&r.payload)
            .headers(headers)
            .timestamp(r.time);
        producer
            .send(record, Duration::from_secs(30))
            .await
            .expect("delivered");
    }
}

/// Labels for the predictions `ids`, one partition each by murmur2 like every producer.
async fn produce_labels(s: &Settings, ids: &[String], time: i64) {
    let producer: FutureProducer = driftwatch_worker::clients::producer_config(&s.kafka)
        .create()
        .expect("producer");
    for id in ids {
        let mut payload = Vec::new();
        let g = GroundTruth {
            request_id: id.clone(),
            model_id: None,
            timestamp: time,
            label: Some("no".into()),
            value: None,
        };
        encode_ground_truth(&g, &mut payload).expect("label encodes");
        producer
            .send(
                FutureRecord::to(&s.topics.ground_truth)
                    .key(id.as_bytes())
                    .payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered");
    }
}

/// A record read back: key, payload, headers.
type ReadBack = (Option<Vec<u8>>, Vec<u8>, BTreeMap<String, String>);

/// Every record of `topic`'s `partitions` as a `read_committed` consumer sees it now.
fn read_all(s: &Settings, topic: &str, partitions: i32) -> Vec<ReadBack> {
    let consumer: BaseConsumer =
        driftwatch_worker::clients::consumer_config(&s.kafka, &unique("sources-reader"))
            .create()
            .expect("reader");
    let mut tpl = TopicPartitionList::new();
    let mut ends = 0;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
            ends += 1;
        }
    }
    let mut out = Vec::new();
    if ends == 0 {
        return out;
    }
    consumer.assign(&tpl).expect("assign");
    let mut idle = 0;
    while idle < 15 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle = 0;
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                let v = h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                                (h.key.to_string(), v.unwrap_or_default())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push((
                    m.key().map(<[u8]>::to_vec),
                    m.payload().unwrap_or_default().to_vec(),
                    headers,
                ));
            }
            _ => idle += 1,
        }
    }
    out
}

/// The request ids of the committed predictions, each with how often it was written.
fn predictions(s: &Settings, partitions: i32) -> BTreeMap<String, u32> {
    let mut ids = BTreeMap::new();
    for (key, payload, _) in read_all(s, &s.topics.predictions, partitions) {
        let p: Prediction = from_avro(&payload).expect("a Prediction datum");
        assert_eq!(
            key.as_deref(),
            Some(p.request_id.as_bytes()),
            "keyed by request id"
        );
        *ids.entry(p.request_id).or_insert(0) += 1;
    }
    ids
}

fn wait_for_predictions(
    s: &Settings,
    partitions: i32,
    at_least: usize,
    within: Duration,
) -> BTreeMap<String, u32> {
    let deadline = Instant::now() + within;
    loop {
        let seen = predictions(s, partitions);
        if seen.len() >= at_least || Instant::now() > deadline {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `GET /metrics` of the worker on `port`.
fn scrape(port: u16) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ =
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    text
}

/// The value of one series line (`name{labels}`) of a scrape.
fn series(text: &str, line: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seldon_and_kserve_pairs_become_predictions_exactly_once_across_a_kill() {
    if !driftwatch_tests::broker_available() {
        return;
    }
    let mut s = Settings {
        kafka: settings(),
        ..Settings::default()
    };
    let partitions = 2;
    create_topics_of(&mut s, partitions).await;
    s.join.flush_interval = Duration::from_millis(500);
    let namespace = unique("ns").replace('.', "-");
    let topics = Topics {
        inputs: format!("seldon.{namespace}.model.iris.inputs"),
        outputs: format!("seldon.{namespace}.model.iris.outputs"),
        kserve: unique("kserve-logger"),
    };
    for t in [&topics.inputs, &topics.outputs, &topics.kserve] {
        create_topic(t, SOURCE_PARTITIONS).await;
    }
    let config: PathBuf = std::env::temp_dir().join(format!("{}.toml", unique("sources")));
    std::fs::write(&config, config_toml(&namespace, &topics.kserve)).expect("config file");
    let setup = (s.clone(), config);
    let port = free_port();
    let env = |port: u16| {
        vec![
            ("DRIFTWATCH__HTTP__ENABLED", "true".to_string()),
            ("DRIFTWATCH__HTTP__BIND", format!("127.0.0.1:{port}")),
        ]
    };
    // Join and monitor here (their accounting is read from their handles); sources apart.
    let stages = Stages::start(&s);
    let worker = Worker::start_role(
        &setup,
        "sources-a",
        Some("a"),
        "sources",
        None,
        &env(free_port()),
    );

    let t0 = driftwatch_tests::now_ms() - 60_000;
    let mut ids: Vec<String> = Vec::new();
    let mut before = Vec::new();
    // A lone request that never gets a response: it waits across the kill, then expires.
    before.push(Out {
        time: t0,
        ..topics
            .seldon_pair("lone", 0, t0)
            .into_iter()
            .next()
            .expect("request")
    });
    for i in 0..SELDON_BEFORE {
        let id = format!("s-{i}");
        before.extend(topics.seldon_pair(&id, i, t0 + 100 + i as i64));
        ids.push(id);
    }
    // Requests whose responses come only after the restart.
    for i in 0..SELDON_ACROSS {
        let id = format!("x-{i}");
        let [request, _] = topics.seldon_pair(&id, i, t0 + 300 + i as i64);
        before.push(request);
        ids.push(id);
    }
    // Bad input of every kind, once each: protobuf that does not parse, no request id, a
    // shape its element count does not fill, a content type KServe's logger does not write.
    let bad = [
        Out {
            payload: vec![0xff, 0xff, 0xff],
            ..topics
                .seldon_pair("bad-proto", 0, t0 + 400)
                .into_iter()
                .next()
                .expect("request")
        },
        Out {
            headers: Vec::new(),
            ..topics
                .seldon_pair("no-id", 1, t0 + 401)
                .into_iter()
                .nth(1)
                .expect("response")
        },
        Out {
            payload: seldon_request(0, 3),
            ..topics
                .seldon_pair("bad-shape", 0, t0 + 402)
                .into_iter()
                .next()
                .expect("request")
        },
        {
            let mut e = topics.kserve_event("bad-type", true, 0, t0 + 403);
            e.headers.retain(|(k, _)| *k != "content-type");
            e.headers.push(("content-type", "text/plain".into()));
            e
        },
    ];
    produce(&s, &before).await;
    let seen = tokio::task::spawn_blocking({
        let s = s.clone();
        move || wait_for_predictions(&s, partitions, SELDON_BEFORE, Duration::from_secs(120))
    })
    .await
    .expect("reader");
    assert_eq!(
        seen.len(),
        SELDON_BEFORE,
        "predictions before the kill; log {}",
        worker.log.display()
    );
    // More traffic, and the kill right behind it: mid-run, with records read or half
    // committed or not yet read. The waiting requests must come back from the changelog,
    // whatever was not committed must be done again, nothing twice.
    let mut more: Vec<Out> = bad.into_iter().collect();
    for i in 0..KSERVE_BEFORE {
        let id = format!("k-{i}");
        more.push(topics.kserve_event(&id, true, i, t0 + 200 + i as i64));
        more.push(topics.kserve_event(&id, false, i, t0 + 250 + i as i64));
        ids.push(id);
    }
    produce(&s, &more).await;
    worker.kill_nine();
    produce_labels(&s, &ids, t0 + 5_000).await;
    let worker = Worker::start_role(&setup, "sources-b", Some("a"), "sources", None, &env(port));

    let mut after = Vec::new();
    for i in 0..SELDON_ACROSS {
        after.push(topics.seldon_response(&format!("x-{i}"), i, t0 + 1_000 + i as i64));
    }
    let mut after_ids = Vec::new();
    for i in 0..SELDON_AFTER {
        let id = format!("t-{i}");
        after.extend(topics.seldon_pair(&id, i, t0 + 1_100 + i as i64));
        after_ids.push(id);
    }
    // A second copy of a response: a duplicate, no second prediction.
    after.push(topics.seldon_response("t-0", 0, t0 + 1_200));
    for i in 0..KSERVE_AFTER {
        let id = format!("l-{i}");
        after.push(topics.kserve_event(&id, false, i, t0 + 1_300 + i as i64));
        after.push(topics.kserve_event(&id, true, i, t0 + 1_350 + i as i64));
        after_ids.push(id);
    }
    // One structured-mode pair (the event format's JSON, `data` inline).
    for (ty, data, p) in [
        (
            driftwatch_oip::kserve::REQUEST_TYPE,
            r#"{"instances": [[5.1, 3.5, 1.4, 0.2]]}"#,
            0,
        ),
        (
            driftwatch_oip::kserve::RESPONSE_TYPE,
            r#"{"predictions": [0]}"#,
            1,
        ),
    ] {
        let event = format!(
            r#"{{"specversion": "1.0", "id": "structured-1", "source": "http://localhost:9081/", "type": "{ty}", "datacontenttype": "application/json", "inferenceservicename": "sklearn-iris", "data": {data}}}"#
        );
        after.push(Out {
            topic: topics.kserve.clone(),
            partition: p,
            headers: vec![(
                "content-type",
                "application/cloudevents+json; charset=utf-8".into(),
            )],
            payload: event.into_bytes(),
            time: t0 + 1_400,
        });
    }
    after_ids.push("structured-1".into());
    produce(&s, &after).await;
    produce_labels(&s, &after_ids, t0 + 5_000).await;
    ids.extend(after_ids);

    let total = ids.len();
    let seen = tokio::task::spawn_blocking({
        let s = s.clone();
        move || wait_for_predictions(&s, partitions, total, Duration::from_secs(180))
    })
    .await
    .expect("reader");
    // Then a record far later in event time: the lone request (restored) expires; the
    // record itself waits.
    produce(
        &s,
        &[Out {
            time: t0 + 60_000,
            ..topics
                .seldon_pair("clock", 0, t0 + 60_000)
                .into_iter()
                .next()
                .expect("request")
        }],
    )
    .await;

    // Exactly one prediction per pair, under the ids produced.
    let mut expected: Vec<String> = ids.clone();
    expected.sort();
    let got: Vec<String> = seen.keys().cloned().collect();
    assert_eq!(got, expected, "predictions; log {}", worker.log.display());
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "written more than once: {twice:?}");

    // Every bad input once, with its reason.
    let mut reasons = BTreeMap::new();
    for (_, _, h) in read_all(&s, &s.topics.dead_letter, 1) {
        if h.contains_key("driftwatch.source.name") {
            *reasons
                .entry(h["driftwatch.error.kind"].clone())
                .or_insert(0) += 1;
        }
    }
    let expected_reasons: BTreeMap<String, i32> = [
        ("missing_request_id", 1),
        ("protobuf", 1),
        ("tensor_shape", 1),
        ("unknown_content_type", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(reasons, expected_reasons, "dead letters");

    // The restarted worker's accounting: every half it read, and every half it restored
    // from the changelog (read by the first worker), ends in one outcome or still waits; the
    // lone request expired, the duplicate response was one, the clock record waits.
    let balance = |text: &str| -> (u64, u64) {
        let mut ins =
            series(text, "driftwatch_restore_entries_total{stage=\"sources\"}").unwrap_or(0);
        let mut ends = 0;
        for source in ["seldon-iris", "kserve-iris"] {
            ins += series(
                text,
                &format!("driftwatch_source_records_total{{source=\"{source}\"}}"),
            )
            .unwrap_or(0);
            ends += series(
                text,
                &format!("driftwatch_source_pending_halves{{source=\"{source}\"}}"),
            )
            .unwrap_or(0);
            for outcome in [
                "paired",
                "unmapped",
                "expired",
                "duplicate",
                "dead_lettered",
            ] {
                ends += series(text, &format!("driftwatch_source_halves_total{{source=\"{source}\",outcome=\"{outcome}\"}}")).unwrap_or(0);
            }
        }
        (ins, ends)
    };
    let expired = "driftwatch_source_halves_total{source=\"seldon-iris\",outcome=\"expired\"}";
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let text = scrape(port);
        let (ins, ends) = balance(&text);
        if (series(&text, expired) == Some(1) && ins == ends) || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (ins, ends) = balance(&metrics);
    assert_eq!(ins, ends, "halves in and halves accounted:\n{metrics}");
    assert_eq!(series(&metrics, expired), Some(1), "{metrics}");
    let duplicate = "driftwatch_source_halves_total{source=\"seldon-iris\",outcome=\"duplicate\"}";
    assert_eq!(series(&metrics, duplicate), Some(1), "{metrics}");
    let waiting = "driftwatch_source_pending_halves{source=\"seldon-iris\"}";
    assert_eq!(series(&metrics, waiting), Some(1), "the clock record waits");

    // The join downstream matched each prediction with its label, nothing else.
    let deadline = Instant::now() + Duration::from_secs(120);
    let join = loop {
        let j = stages.join.stats();
        let matched: u64 = j.per_model.values().map(|c| c.matched).sum();
        if matched >= total as u64 || Instant::now() > deadline {
            break j;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let sum = |f: fn(&driftwatch_core::JoinCounters) -> u64| -> u64 {
        join.per_model.values().map(f).sum()
    };
    assert_eq!(sum(|c| c.predictions), total as u64);
    assert_eq!(sum(|c| c.labels), total as u64);
    assert_eq!(sum(|c| c.matched), total as u64);
    assert_eq!(
        sum(|c| c.dead_lettered + c.duplicate_predictions + c.duplicate_labels + c.orphan_labels),
        0
    );
    let models: Vec<&String> = join.per_model.keys().map(|(m, _)| m).collect();
    assert!(
        models.iter().all(|m| *m == "iris" || *m == "sklearn-iris"),
        "{models:?}"
    );

    let status = worker.terminate();
    assert!(status.success(), "sources worker exit {status}");
    stages.stop().await;
}
