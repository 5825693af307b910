//! The wire contract may only evolve compatibly: every current schema must be readable by the
//! last released one and vice versa (Avro "FULL" compatibility), so producers and consumers can
//! upgrade in any order. An incompatible change to `schemas/*.avsc` fails this test; a deliberate
//! break needs a new released version and a migration plan.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use std::path::{Path, PathBuf};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use driftwatch_codec::RecordKind;

fn released_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/released/v1")
}

fn released(kind: RecordKind) -> Schema {
    let path = released_dir().join(kind.file_name());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Schema::parse_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Kinds released in v1; a kind added later (ModelReference) is new, not an evolution.
fn released_kinds() -> Vec<RecordKind> {
    RecordKind::ALL
        .into_iter()
        .filter(|k| released_dir().join(k.file_name()).exists())
        .collect()
}

#[test]
fn current_schemas_are_mutually_compatible_with_the_released_ones() {
    let kinds = released_kinds();
    assert!(
        kinds.len() >= 6,
        "the v1 schemas are all released: {kinds:?}"
    );
    for kind in kinds {
        let current = kind.schema().unwrap();
        let old = released(kind);
        if let Err(e) = SchemaCompatibility::mutual_read(current, &old) {
            panic!(
                "{} is not compatible with released v1: {e}",
                kind.file_name()
            );
        }
    }
}

#[test]
fn every_released_schema_has_a_current_one() {
    let mut released: Vec<String> = std::fs::read_dir(released_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".avsc"))
        .collect();
    released.sort();
    let current: Vec<String> = RecordKind::ALL
        .iter()
        .map(|k| k.file_name().to_owned())
        .collect();
    for r in &released {
        assert!(current.contains(r), "released {r} has no current schema");
    }
}

/// The check above can fail: an incompatible edit of a released schema is detected.
#[test]
fn the_check_detects_incompatible_edits() {
    let old = released(RecordKind::Prediction);
    let text = RecordKind::Prediction.schema_text();
    // A new required field without a default: old datums cannot be read.
    let added = text.replacen(
        r#""fields": ["#,
        r#""fields": [{"name": "tenant", "type": "string", "doc": "x"},"#,
        1,
    );
    // A changed type.
    let retyped = text.replacen(
        r#""model_version", "type": "string""#,
        r#""model_version", "type": "long""#,
        1,
    );
    for edited in [added, retyped] {
        assert_ne!(edited, text, "the edit did not apply");
        let schema = Schema::parse_str(&edited).unwrap();
        assert!(SchemaCompatibility::mutual_read(&schema, &old).is_err());
    }
}
