"""Retrain and drift events as driftwatch's monitor publishes them, decoded.

The monitor writes bare Avro datums of `RetrainEvent.avsc` / `DriftEvent.avsc` by default, or
their JSON form with `monitor.output_format = "json"`. `decode_retrain_event` and
`decode_drift_event` read either, told apart the way driftwatch tells its inputs apart
(`schemas/README.md`): a payload starting with `{` is JSON, one starting with byte `0x00` and at
least 5 bytes long is Confluent-framed (the 5-byte header is skipped; the datum is read with the
packaged schema), anything else a bare datum. A bare datum of these records never starts with
`{` or `0x00`: it starts with the length of the non-empty `event_id`.

Timestamps are integer milliseconds since the Unix epoch (UTC), as in the JSON form.
"""

from __future__ import annotations

import io
import json
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, Optional, Union

import fastavro

from . import _schemas
from .errors import DecodeError


@dataclass(frozen=True)
class RetrainEvent:
    """Advice to retrain a model (`schemas/RetrainEvent.avsc`); the last three fields say
    where it was read from when it came from a topic."""

    event_id: str
    model_id: str
    model_version: str
    reasons: list[str]
    drift_event_ids: list[str]
    metrics: dict[str, float]
    train_from: int
    train_to: int
    dry_run: bool
    created_at: int
    estimated_decay_per_day: Optional[float] = None
    suggested_retrain_interval_ms: Optional[int] = None
    topic: Optional[str] = field(default=None, compare=False)
    partition: Optional[int] = field(default=None, compare=False)
    offset: Optional[int] = field(default=None, compare=False)

    kind = "retrain"


@dataclass(frozen=True)
class DriftEvent:
    """A drift detector changed state (`schemas/DriftEvent.avsc`); `state` and
    `previous_state` are `OK`, `WARNING`, `DRIFT` or `RECOVERED`; `feature` is `None` for
    model-level detectors."""

    event_id: str
    model_id: str
    model_version: str
    detector: str
    previous_state: str
    state: str
    statistic: str
    value: float
    threshold: float
    baseline_start: int
    baseline_end: int
    window_start: int
    window_end: int
    baseline_samples: int
    window_samples: int
    severity: float
    detected_at: int
    feature: Optional[str] = None
    topic: Optional[str] = field(default=None, compare=False)
    partition: Optional[int] = field(default=None, compare=False)
    offset: Optional[int] = field(default=None, compare=False)

    kind = "drift"


Event = Union[RetrainEvent, DriftEvent]

_ORIGIN = ("topic", "partition", "offset")


def decode_record(schema: str, payload: bytes) -> dict[str, Any]:
    """Decodes one payload of record `schema` (Avro bare or framed, or JSON) into a dict."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise DecodeError(f"{schema}: payload must be bytes, not {type(payload).__name__}")
    data = bytes(payload)
    if not data:
        raise DecodeError(f"{schema}: empty payload")
    if data[:1] == b"{":
        try:
            value = json.loads(data)
        except ValueError as e:
            raise DecodeError(f"{schema}: invalid JSON: {e}") from None
        if not isinstance(value, dict):
            raise DecodeError(f"{schema}: JSON payload is not an object")
        return value
    if data[0] == 0 and len(data) >= 5:
        data = data[5:]
    buf = io.BytesIO(data)
    try:
        value = fastavro.schemaless_reader(buf, _schemas.parsed(schema), None)
    except Exception as e:  # fastavro raises several types on truncated or garbled data
        raise DecodeError(f"{schema}: not an Avro datum of the packaged schema: {e}") from None
    if buf.tell() != len(data):
        raise DecodeError(f"{schema}: {len(data) - buf.tell()} byte(s) left after the datum "
                          "(written with another schema?)")
    return value


def _build(cls, schema: str, record: dict[str, Any], origin: dict[str, Any]):
    own = [f for f in fields(cls) if f.name not in _ORIGIN]
    missing = [f.name for f in own
               if f.name not in record and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise DecodeError(f"{schema}: missing field(s) {', '.join(missing)}")
    # Fields a newer driftwatch adds (JSON form) are ignored, as Avro resolution would skip them.
    names = {f.name for f in own}
    return cls(**{k: v for k, v in record.items() if k in names}, **origin)


def decode_retrain_event(payload: bytes, **origin: Any) -> RetrainEvent:
    """A `RetrainEvent` from a payload of the `retrain-events` topic."""
    return _build(RetrainEvent, "RetrainEvent", decode_record("RetrainEvent", payload), origin)


def decode_drift_event(payload: bytes, **origin: Any) -> DriftEvent:
    """A `DriftEvent` from a payload of the `drift-events` topic."""
    return _build(DriftEvent, "DriftEvent", decode_record("DriftEvent", payload), origin)
