//! Hostile input: every decoder returns an error, never panics, on truncated, corrupted or
//! random bytes.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

mod common;

use common::*;
use driftwatch_codec::wire::put_long;
use driftwatch_codec::{
    decode_ground_truth, decode_prediction, from_avro, from_json_slice, to_avro, CodecError,
};
use driftwatch_core::{
    DriftEvent, GroundTruth, ModelMetrics, ModelPartial, Prediction, RetrainEvent,
};
use proptest::prelude::*;

/// Runs every decoder of the crate on `bytes`; only panics matter here.
fn decode_everything(bytes: &[u8]) {
    let _ = decode_prediction(bytes);
    let _ = decode_ground_truth(bytes);
    let _ = from_avro::<DriftEvent>(bytes);
    let _ = from_avro::<RetrainEvent>(bytes);
    let _ = from_avro::<ModelMetrics>(bytes);
    let _ = from_avro::<ModelPartial>(bytes);
    let _ = from_json_slice::<Prediction>(bytes);
    let _ = from_json_slice::<GroundTruth>(bytes);
}

#[test]
fn every_truncation_of_a_valid_datum_is_an_error() {
    let p = realistic_prediction();
    let datum = to_avro(&p).unwrap();
    assert_eq!(decode_prediction(&datum).unwrap(), p);
    for end in 0..datum.len() {
        let err = decode_prediction(&datum[..end]).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Truncated { .. } | CodecError::InvalidData(_)
            ),
            "cut at {end}: {err:?}"
        );
    }
    let g = GroundTruth {
        request_id: "req".into(),
        model_id: Some("m".into()),
        timestamp: 1,
        label: Some("x".into()),
        value: Some(1.0),
    };
    let datum = to_avro(&g).unwrap();
    for end in 0..datum.len() {
        assert!(decode_ground_truth(&datum[..end]).is_err(), "cut at {end}");
    }
}

#[test]
fn trailing_bytes_are_an_error() {
    let mut datum = to_avro(&realistic_prediction()).unwrap();
    datum.push(0);
    assert_eq!(
        decode_prediction(&datum).unwrap_err().kind(),
        "invalid_data"
    );
}

/// The head of a prediction datum up to (not including) the features map.
fn head() -> Vec<u8> {
    let mut out = Vec::new();
    for s in ["r", "m", "v"] {
        put_long(&mut out, s.len() as i64);
        out.extend_from_slice(s.as_bytes());
    }
    put_long(&mut out, 1);
    out
}

#[test]
fn hostile_lengths_and_counts_are_rejected_without_allocating() {
    // A feature map claiming 2^62 entries.
    let mut huge = head();
    put_long(&mut huge, 1 << 62);
    assert_eq!(decode_prediction(&huge).unwrap_err().kind(), "invalid_data");

    // Negative (sized) block count whose byte size is negative.
    let mut neg_size = head();
    put_long(&mut neg_size, -1);
    put_long(&mut neg_size, -5);
    assert_eq!(
        decode_prediction(&neg_size).unwrap_err().kind(),
        "invalid_data"
    );

    // A feature name whose length is past the end.
    let mut long_key = head();
    put_long(&mut long_key, 1);
    put_long(&mut long_key, 1 << 30);
    assert_eq!(
        decode_prediction(&long_key).unwrap_err().kind(),
        "truncated"
    );

    // A feature name that is not UTF-8.
    let mut bad_key = head();
    put_long(&mut bad_key, 1);
    put_long(&mut bad_key, 2);
    bad_key.extend_from_slice(&[0xc3, 0x28]);
    put_long(&mut bad_key, 0);
    assert_eq!(
        decode_prediction(&bad_key).unwrap_err().kind(),
        "invalid_utf8"
    );

    // A union branch index out of range.
    let mut bad_branch = head();
    put_long(&mut bad_branch, 1);
    put_long(&mut bad_branch, 1);
    bad_branch.push(b'a');
    put_long(&mut bad_branch, 3);
    assert_eq!(
        decode_prediction(&bad_branch).unwrap_err().kind(),
        "invalid_data"
    );

    // An empty request id.
    let p = realistic_prediction();
    let id_len = 1 + p.request_id.len(); // one length byte, then the id
    let mut empty_id = Vec::new();
    put_long(&mut empty_id, 0);
    empty_id.extend_from_slice(&to_avro(&p).unwrap()[id_len..]);
    assert_eq!(
        decode_prediction(&empty_id).unwrap_err().kind(),
        "invalid_data"
    );
}

#[test]
fn every_truncation_and_byte_flip_of_every_record_never_panics() {
    let valid = [
        to_avro(&realistic_prediction()).unwrap(),
        to_avro(&GroundTruth {
            request_id: "r".into(),
            model_id: None,
            timestamp: 3,
            label: None,
            value: Some(2.0),
        })
        .unwrap(),
    ];
    for datum in valid {
        for end in 0..=datum.len() {
            decode_everything(&datum[..end]);
        }
        for i in 0..datum.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut d = datum.clone();
                d[i] ^= flip;
                decode_everything(&d);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn corrupted_random_predictions_never_panic(
        p in prediction(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut datum = to_avro(&p).unwrap();
        let i = at.index(datum.len());
        datum[i] = byte;
        decode_everything(&datum);
    }
}
