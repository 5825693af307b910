//! Avro predictions and labels produced with driftwatch's codec and producer settings, consumed
//! back through the worker's consumer settings in a consumer group, decoded and compared.

use std::collections::HashMap;
use std::time::Duration;

use driftwatch_codec::{decode_ground_truth, decode_prediction, to_avro};
use driftwatch_core::{FeatureValue, GroundTruth, Prediction};
use driftwatch_tests::{create_topic, java_partition, settings, unique};
use driftwatch_worker::clients::{consumer_config, producer_config};
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

const PARTITIONS: i32 = 4;
const N: usize = 500;

fn prediction(i: usize) -> Prediction {
    Prediction {
        request_id: format!("req-{i:06}"),
        model_id: format!("model-{}", i % 3),
        model_version: "v1".into(),
        timestamp: 1_700_000_000_000 + i as i64,
        features: vec![
            ("age".into(), FeatureValue::Number(20.0 + (i % 50) as f64)),
            (
                "country".into(),
                FeatureValue::Category(["DE", "FR", "US"][i % 3].into()),
            ),
            ("income".into(), FeatureValue::Missing),
        ],
        predicted_label: Some(if i % 2 == 0 { "yes" } else { "no" }.into()),
        predicted_value: None,
        scores: Some(vec![("yes".into(), 0.7), ("no".into(), 0.3)]),
        tags: vec![("region".into(), "eu".into())],
    }
}

fn label(i: usize) -> GroundTruth {
    GroundTruth {
        request_id: format!("req-{i:06}"),
        model_id: Some(format!("model-{}", i % 3)),
        timestamp: 1_700_000_060_000 + i as i64,
        label: Some(if i % 3 == 0 { "yes" } else { "no" }.into()),
        value: None,
    }
}

#[tokio::test]
async fn avro_records_round_trip_through_a_real_broker() {
    let (pt, gt) = (unique("predictions"), unique("ground-truth"));
    create_topic(&pt, PARTITIONS).await;
    create_topic(&gt, PARTITIONS).await;
    let s = settings();

    let producer: FutureProducer = producer_config(&s).create().expect("producer");
    let mut placed: HashMap<(String, String), i32> = HashMap::new();
    for i in 0..N {
        let p = prediction(i);
        let l = label(i);
        let pb = to_avro(&p).expect("encode prediction");
        let lb = to_avro(&l).expect("encode label");
        let part = producer
            .send(
                FutureRecord::to(&pt).key(&p.request_id).payload(&pb),
                Duration::from_secs(10),
            )
            .await
            .expect("deliver prediction")
            .partition;
        placed.insert((pt.clone(), p.request_id.clone()), part);
        let part = producer
            .send(
                FutureRecord::to(&gt).key(&l.request_id).payload(&lb),
                Duration::from_secs(10),
            )
            .await
            .expect("deliver label")
            .partition;
        placed.insert((gt.clone(), l.request_id.clone()), part);
    }

    let consumer: StreamConsumer = consumer_config(&s, &unique("group"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[&pt, &gt]).expect("subscribe");

    let mut preds = HashMap::new();
    let mut labels = HashMap::new();
    let mut stream = consumer.stream();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while preds.len() + labels.len() < 2 * N {
        let msg = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("all records within 60 s")
            .expect("stream open")
            .expect("no consumer error");
        let payload = msg.payload().expect("payload");
        let key = std::str::from_utf8(msg.key().expect("key")).expect("utf-8 key");
        // The producer placed each key where Java's default partitioner would.
        assert_eq!(
            msg.partition(),
            java_partition(key.as_bytes(), PARTITIONS),
            "key {key} not on its murmur2 partition"
        );
        assert_eq!(
            placed[&(msg.topic().to_string(), key.to_string())],
            msg.partition()
        );
        if msg.topic() == pt {
            let p = decode_prediction(payload).expect("decode prediction");
            assert_eq!(p.request_id, key);
            assert!(
                preds.insert(p.request_id.clone(), p).is_none(),
                "duplicate delivery"
            );
        } else {
            let l = decode_ground_truth(payload).expect("decode label");
            assert_eq!(l.request_id, key);
            assert!(
                labels.insert(l.request_id.clone(), l).is_none(),
                "duplicate delivery"
            );
        }
    }
    for i in 0..N {
        let p = prediction(i);
        assert_eq!(preds.get(&p.request_id), Some(&p));
        let l = label(i);
        assert_eq!(labels.get(&l.request_id), Some(&l));
        // Co-partitioning: a request's prediction and label share a partition number.
        assert_eq!(
            placed[&(pt.clone(), p.request_id.clone())],
            placed[&(gt.clone(), l.request_id.clone())]
        );
    }
}
