"""Building `Prediction` and `GroundTruth` records from Python values, and refusing bad ones.

Everything driftwatch would dead-letter, and everything the Avro schema cannot carry, is
refused here with an exception, before a byte is sent: a producer finds out at the call that
was wrong, not from a dead-letter topic hours later. The rules follow `schemas/README.md`:

- ids (`request_id`, `model_id`, `model_version`) are non-empty strings;
- a feature value is a real number (sent as a double), a string (a categorical value) or
  `None` (missing); a bool is refused, because it is neither (send `1.0`/`0.0` or
  `"true"`/`"false"`, whichever the model means);
- NaN and infinities are refused everywhere (features, prediction, scores, labels): use `None`
  for a missing feature;
- a prediction is a class label (`str`, sent as `predicted_label`) or a regression value (a
  real number, `predicted_value`); `scores` are class probabilities, so they go with a label;
- a timestamp is integer milliseconds since the Unix epoch, or a timezone-aware `datetime`;
  `None` means now.
"""

from __future__ import annotations

import math
import numbers
import time
from datetime import datetime
from typing import Any, Mapping, Optional

# Timestamps driftwatch accepts as event time: from 1970 up to the year 3000 (it dead-letters
# "absurd" ones; see tests/malformed.rs).
MAX_TIMESTAMP_MS = 32_503_680_000_000


def _id(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must not be empty")
    return value


def _real(name: str, value: Any) -> float:
    """A finite real number as a float; bools and non-numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, not {type(value).__name__}")
    f = float(value)
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"{name} is {f}: NaN and infinities cannot be sent (use None for a "
                         "missing feature)")
    return f


def timestamp_ms(name: str, value: Any) -> int:
    """`value` as epoch milliseconds; `None` is now."""
    if value is None:
        return time.time_ns() // 1_000_000
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{name} is a naive datetime: give it a timezone (e.g. UTC)")
        ms = int(value.timestamp() * 1000)
    elif isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be int milliseconds since the epoch or an aware datetime, "
                        f"not {type(value).__name__}")
    else:
        ms = int(value)
    if not 0 <= ms <= MAX_TIMESTAMP_MS:
        raise ValueError(f"{name} {ms} ms is outside 1970..3000 (milliseconds, not seconds?)")
    return ms


def _mapping(name: str, value: Any) -> Mapping:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping (dict), not {type(value).__name__}")
    for k in value:
        if not isinstance(k, str):
            raise TypeError(f"{name}: key {k!r} must be a str, not {type(k).__name__}")
        if not k:
            raise ValueError(f"{name}: keys must not be empty")
    return value


def features_of(value: Any) -> dict[str, Optional[float | str]]:
    out: dict[str, Optional[float | str]] = {}
    for k, v in _mapping("features", value).items():
        if v is None or isinstance(v, str):
            out[k] = v
        else:
            try:
                out[k] = _real(f"features[{k!r}]", v)
            except TypeError:
                raise TypeError(f"features[{k!r}] must be a real number, a str or None, "
                                f"not {type(v).__name__}") from None
    return out


def prediction_record(model_id: Any, model_version: Any, request_id: Any, features: Any,
                      prediction: Any, scores: Any = None, timestamp: Any = None,
                      tags: Any = None) -> dict[str, Any]:
    """A `Prediction` record (the dict fastavro encodes), or an exception saying what is wrong."""
    record: dict[str, Any] = {
        "request_id": _id("request_id", request_id),
        "model_id": _id("model_id", model_id),
        "model_version": _id("model_version", model_version),
        "timestamp": timestamp_ms("timestamp", timestamp),
        "features": features_of({} if features is None else features),
        "predicted_label": None,
        "predicted_value": None,
        "scores": None,
        "tags": {},
    }
    record["predicted_label"], record["predicted_value"] = _class_or_value(
        "prediction", prediction, "a class label (str) or a regression value (number)")
    if scores is not None:
        if record["predicted_label"] is None:
            raise ValueError("scores are class probabilities: give them with a class label "
                             "prediction, not a regression value")
        record["scores"] = {k: _real(f"scores[{k!r}]", v)
                            for k, v in _mapping("scores", scores).items()}
    if tags is not None:
        for k, v in _mapping("tags", tags).items():
            if not isinstance(v, str):
                raise TypeError(f"tags[{k!r}] must be a str, not {type(v).__name__}")
        record["tags"] = dict(tags)
    return record


def ground_truth_record(request_id: Any, label: Any, timestamp: Any = None,
                        model_id: Any = None) -> dict[str, Any]:
    """A `GroundTruth` record, or an exception saying what is wrong."""
    record: dict[str, Any] = {
        "request_id": _id("request_id", request_id),
        "model_id": None if model_id is None else _id("model_id", model_id),
        "timestamp": timestamp_ms("timestamp", timestamp),
        "label": None,
        "value": None,
    }
    record["label"], record["value"] = _class_or_value(
        "label", label, "the true class (str) or the true value (number)")
    return record


def _class_or_value(name: str, x: Any, expected: str) -> tuple[Optional[str], Optional[float]]:
    """(class, None) for a str, (None, value) for a finite real number; else `TypeError`."""
    if isinstance(x, str):
        return x, None
    try:
        if x is None:
            raise TypeError
        return None, _real(name, x)
    except TypeError:
        raise TypeError(f"{name} must be {expected}, not "
                        f"{'None' if x is None else type(x).__name__}") from None
