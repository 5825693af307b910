"""The sensor's match function of `retrain_dag.py`, in its own module: Airflow's triggerer
imports the `apply_function` of an `AwaitMessageSensor` by its dotted path.

`match_retrain_event(message, model_id)` decodes one record of driftwatch's `retrain-events`
topic (Avro or, with `monitor.output_format = "json"`, JSON: `decode_retrain_event` reads
either) and returns the event's fields when it is advice for `model_id` (and not a dry run);
otherwise `None`, and the sensor keeps waiting.
"""

from __future__ import annotations

from typing import Any, Optional

from driftwatch_client import decode_retrain_event

# What the training task receives (fields of schemas/RetrainEvent.avsc).
PASSED_FIELDS = ("event_id", "model_id", "model_version", "train_from", "train_to", "reasons")


def match_retrain_event(message: Any, model_id: str) -> Optional[dict]:
    event = decode_retrain_event(message.value() or b"")
    if event.model_id != model_id or event.dry_run:
        return None
    return {name: getattr(event, name) for name in PASSED_FIELDS}
