"""What the example tests check the examples against: driftwatch's own defaults and schemas."""

import json
import re
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1]
REPO = EXAMPLES.parent

for d in ("listener", "airflow"):
    sys.path.insert(0, str(EXAMPLES / d))


def default_topic(key: str) -> str:
    """The default of `topics.<key>` in deploy/driftwatch.example.toml, the file that lists
    every setting with its default."""
    text = (REPO / "deploy" / "driftwatch.example.toml").read_text()
    section = text.split("\n[topics]\n", 1)[1].split("\n[", 1)[0]
    m = re.search(rf'^{key}\s*=\s*"([^"]+)"', section, re.M)
    assert m, f"topics.{key} not in deploy/driftwatch.example.toml"
    return m.group(1)


def schema_fields(record: str) -> list:
    schema = json.loads((REPO / "schemas" / f"{record}.avsc").read_text())
    return [f["name"] for f in schema["fields"]]


def retrain_event_record(**overrides) -> dict:
    record = {
        "event_id": "0f" * 16, "model_id": "fraud", "model_version": "v3",
        "reasons": ["accuracy dropped", "psi on amount"], "drift_event_ids": ["a", "b"],
        "metrics": {"accuracy": 0.71}, "train_from": 1_700_000_000_000,
        "train_to": 1_700_086_400_000, "dry_run": False, "created_at": 1_700_086_400_001,
        "estimated_decay_per_day": None, "suggested_retrain_interval_ms": None,
    }
    record.update(overrides)
    return record
