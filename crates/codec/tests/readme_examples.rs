//! The JSON examples of `schemas/README.md` are valid input, so the documentation cannot drift
//! from the codec.
#![allow(clippy::unwrap_used)] // tests unwrap: a failure is the point

use driftwatch_codec::from_json;
use driftwatch_core::{
    DriftEvent, GroundTruth, ModelMetrics, ModelPartial, Prediction, RetrainEvent,
};

fn examples() -> Vec<(String, String)> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/README.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut heading = String::new();
    let mut block: Option<String> = None;
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("### ") {
            heading = h.trim().to_owned();
        } else if line.trim() == "```json" {
            block = Some(String::new());
        } else if line.trim() == "```" {
            if let Some(b) = block.take() {
                out.push((heading.clone(), b));
            }
        } else if let Some(b) = block.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    out
}

#[test]
fn every_json_example_decodes_as_its_record() {
    let examples = examples();
    assert_eq!(
        examples.len(),
        6,
        "{:?}",
        examples.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    for (heading, json) in examples {
        let result = match heading.split_whitespace().next().unwrap_or("") {
            "Prediction" => from_json::<Prediction>(&json).map(|_| ()),
            "GroundTruth" => from_json::<GroundTruth>(&json).map(|_| ()),
            "DriftEvent" => from_json::<DriftEvent>(&json).map(|_| ()),
            "RetrainEvent" => from_json::<RetrainEvent>(&json).map(|_| ()),
            "ModelMetrics" => from_json::<ModelMetrics>(&json).map(|_| ()),
            "ModelPartial" => from_json::<ModelPartial>(&json).map(|_| ()),
            other => panic!("example under unknown heading {other}"),
        };
        if let Err(e) = result {
            panic!("README example for {heading}: {e}");
        }
    }
}
