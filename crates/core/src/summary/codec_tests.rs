//! Tests of the summary codec: round trips, canonical bytes and every refusal.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::summary::FeatureId;

fn sample() -> (SignatureSummary, FeatureInterner) {
    let mut interner = FeatureInterner::new();
    let mut s = SignatureSummary::new();
    let x = interner.intern("x").unwrap();
    let c = interner.intern("c").unwrap();
    let e = interner.intern("empty_missing").unwrap();
    for i in 0..2000 {
        s.update_number(x, f64::from(i) * 0.5);
        s.update_category(c, ["a", "b", "c"][i as usize % 3]);
        s.update_missing(e);
        s.update_output(Some("yes"), Some(f64::from(i)), Some(0.5));
    }
    s.update_category(x, "mismatch");
    (s, interner)
}

#[test]
fn round_trip_preserves_everything_observable() {
    let (mut s, interner) = sample();
    s.flush();
    let bytes = s.to_bytes(&interner).unwrap();
    // A fresh interner: ids may differ, names carry over.
    let mut other = FeatureInterner::new();
    other.intern("unrelated").unwrap();
    let back = SignatureSummary::from_bytes(&bytes, &mut other).unwrap();
    assert_eq!(back.predictions(), s.predictions());
    for name in ["x", "c", "empty_missing"] {
        let a = s.feature_by_name(&interner, name).unwrap();
        let b = back.feature_by_name(&other, name).unwrap();
        assert_eq!(a.count(), b.count(), "{name}");
        assert_eq!(a.missing(), b.missing(), "{name}");
        assert_eq!(a.type_mismatches(), b.type_mismatches(), "{name}");
        assert_eq!(a.kind(), b.kind(), "{name}");
    }
    let xa = s
        .feature_by_name(&interner, "x")
        .unwrap()
        .numeric()
        .unwrap();
    let xb = back
        .feature_by_name(&other, "x")
        .unwrap()
        .numeric()
        .unwrap();
    assert_eq!(xa.mean(), xb.mean());
    assert_eq!(xa.variance(), xb.variance());
    assert_eq!(xa.quantile(0.5), xb.quantile(0.5));
    let ca = s
        .feature_by_name(&interner, "c")
        .unwrap()
        .categorical()
        .unwrap();
    let cb = back
        .feature_by_name(&other, "c")
        .unwrap()
        .categorical()
        .unwrap();
    assert_eq!(ca.frequent_items(), cb.frequent_items());
    assert_eq!(ca.distinct_estimate(), cb.distinct_estimate());
    assert_eq!(back.predicted_label().estimate("yes"), 2000);
    // Re-encoding through the other interner gives the same bytes.
    assert_eq!(back.to_bytes(&other).unwrap(), bytes);
}

#[test]
fn empty_signature_round_trips() {
    let interner = FeatureInterner::new();
    let bytes = SignatureSummary::new().to_bytes(&interner).unwrap();
    let back = SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new()).unwrap();
    assert_eq!(back.predictions(), 0);
    assert_eq!(back.features().count(), 0);
}

#[test]
fn every_truncation_is_an_error() {
    let (s, interner) = sample();
    let bytes = s.to_bytes(&interner).unwrap();
    for len in 0..bytes.len() {
        let r = SignatureSummary::from_bytes(&bytes[..len], &mut FeatureInterner::new());
        assert!(r.is_err(), "prefix of {len} bytes decoded");
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(SignatureSummary::from_bytes(&long, &mut FeatureInterner::new()).is_err());
}

#[test]
fn version_and_magic_are_checked() {
    let (s, interner) = sample();
    let mut bytes = s.to_bytes(&interner).unwrap();
    bytes[4] = 99;
    assert_eq!(
        SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new()).err(),
        Some(SummaryError::UnsupportedVersion(99))
    );
    bytes[0] = b'X';
    assert!(SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new()).is_err());
}

#[test]
fn unknown_feature_id_is_an_error() {
    let mut s = SignatureSummary::new();
    s.update_number(FeatureId(3), 1.0);
    assert!(s.to_bytes(&FeatureInterner::new()).is_err());
}

#[test]
fn full_interner_is_reported() {
    let (s, interner) = sample();
    let bytes = s.to_bytes(&interner).unwrap();
    let mut small = FeatureInterner::with_limit(1);
    assert!(matches!(
        SignatureSummary::from_bytes(&bytes, &mut small),
        Err(SummaryError::FeaturesExhausted { .. })
    ));
}

#[test]
fn format_2_reads_exact_categoricals_and_refuses_purged_ones() {
    use super::super::categorical::{new_frequent, new_hll};
    let interner = FeatureInterner::new();
    let v2 = |counts: &[(String, u64)]| {
        let mut s = SignatureSummary::new();
        let mut f = new_frequent().unwrap();
        let mut h = new_hll().unwrap();
        for (v, n) in counts {
            for _ in 0..*n {
                s.update_output(Some(v), None, None);
            }
            f.update_with_count(v.clone(), *n);
            h.update(v.as_str());
        }
        let v3 = s.to_bytes(&interner).unwrap();
        let cat_len = encode_categorical(&s.predicted_label).0.len();
        let total: u64 = counts.iter().map(|(_, n)| n).sum();
        let mut w = Writer(v3[..13].to_vec());
        w.0[4] = 2;
        w.u64(total);
        w.u64(0);
        w.blob(Some(f.serialize())).unwrap();
        w.blob(Some(h.serialize())).unwrap();
        w.0.extend_from_slice(&v3[13 + cat_len..]);
        (s, w.0)
    };
    let few: Vec<(String, u64)> = (0..100).map(|i| (format!("v{i}"), 1 + i % 7)).collect();
    let (s, bytes) = v2(&few);
    let back = SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new()).unwrap();
    assert_eq!(
        back.to_bytes(&interner).unwrap(),
        s.to_bytes(&interner).unwrap()
    );
    let many: Vec<(String, u64)> = (0..2000).map(|i| (format!("v{i}"), 1)).collect();
    let (_, bytes) = v2(&many);
    assert!(SignatureSummary::from_bytes(&bytes, &mut FeatureInterner::new()).is_err());
}
