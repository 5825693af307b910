"""Invalid input raises before anything is queued; valid input encodes to the contract."""

import io
import math
from datetime import datetime, timezone

import fastavro
import pytest

from driftwatch_client import DeliveryError, Producer, decode_retrain_event
from driftwatch_client import _schemas
from driftwatch_client.producer import encode


class Recording(Producer):
    """A producer whose sends are recorded, not queued (no broker needed)."""

    def __init__(self):
        super().__init__("127.0.0.1:1")
        self.sent = []

    def _send(self, topic, key, value):
        self.sent.append((topic, key, value))


GOOD = dict(model_id="m", model_version="v1", request_id="r1", features={"a": 1, "b": "x",
            "c": None}, prediction="yes")


@pytest.mark.parametrize("change,exc", [
    ({"request_id": ""}, ValueError),
    ({"request_id": 7}, TypeError),
    ({"model_id": ""}, ValueError),
    ({"model_version": None}, TypeError),
    ({"features": {"a": math.nan}}, ValueError),
    ({"features": {"a": math.inf}}, ValueError),
    ({"features": {"a": True}}, TypeError),
    ({"features": {"a": [1]}}, TypeError),
    ({"features": {1: 2.0}}, TypeError),
    ({"features": [("a", 1.0)]}, TypeError),
    ({"prediction": None}, TypeError),
    ({"prediction": math.nan}, ValueError),
    ({"prediction": b"yes"}, TypeError),
    ({"scores": {"yes": math.nan}}, ValueError),
    ({"scores": {"yes": "0.9"}}, TypeError),
    ({"prediction": 1.5, "scores": {"yes": 0.9}}, ValueError),
    ({"timestamp": 1.7e12}, TypeError),
    ({"timestamp": -1}, ValueError),
    ({"timestamp": 1_700_000_000_000_000}, ValueError),
    ({"timestamp": datetime(2026, 1, 1)}, ValueError),
])
def test_invalid_prediction_raises_and_sends_nothing(change, exc):
    p = Recording()
    with pytest.raises(exc):
        p.log_prediction(**{**GOOD, **change})
    assert p.sent == []


def test_unknown_fields_raise_and_send_nothing():
    p = Recording()
    with pytest.raises(TypeError):
        p.log_prediction(**GOOD, colour="red")
    with pytest.raises(TypeError):
        p.log_ground_truth("r1", "yes", label_source="x")
    with pytest.raises(TypeError):
        p.log_prediction(**GOOD, tags={"region": 1})
    assert p.sent == []


@pytest.mark.parametrize("args,exc", [
    (("", "yes"), ValueError),
    (("r1", None), TypeError),
    (("r1", math.nan), ValueError),
    (("r1", True), TypeError),
    (("r1", {"x": 1}), TypeError),
])
def test_invalid_ground_truth_raises_and_sends_nothing(args, exc):
    p = Recording()
    with pytest.raises(exc):
        p.log_ground_truth(*args)
    assert p.sent == []


def decode(schema, payload):
    return fastavro.schemaless_reader(io.BytesIO(payload), _schemas.parsed(schema), None)


def test_a_prediction_is_a_bare_datum_of_the_contract_keyed_by_request_id():
    p = Recording()
    t = datetime(2026, 11, 3, tzinfo=timezone.utc)
    p.log_prediction("fraud", "v3", "req-1", {"age": 31, "country": "DE", "x": None}, "legit",
                     scores={"legit": 0.93, "fraud": 0.07}, timestamp=t, tags={"region": "eu"})
    p.log_prediction("price", "v1", "req-2", {}, 12, timestamp=5)
    [(topic, key, value), (_, _, value2)] = p.sent
    assert (topic, key) == ("predictions", "req-1")
    assert value[:1] != b"\x00" and value[:1] != b"{"
    assert decode("Prediction", value) == {
        "request_id": "req-1", "model_id": "fraud", "model_version": "v3",
        "timestamp": int(t.timestamp() * 1000),
        "features": {"age": 31.0, "country": "DE", "x": None},
        "predicted_label": "legit", "predicted_value": None,
        "scores": {"legit": 0.93, "fraud": 0.07}, "tags": {"region": "eu"}}
    r = decode("Prediction", value2)
    assert (r["predicted_label"], r["predicted_value"], r["timestamp"]) == (None, 12.0, 5)


def test_a_label_is_a_class_or_a_value():
    p = Recording()
    p.log_ground_truth("req-1", "fraud", 10, model_id="fraud")
    p.log_ground_truth("req-2", 3.5, 11)
    [(topic, key, a), (_, _, b)] = p.sent
    assert (topic, key) == ("ground-truth", "req-1")
    assert decode("GroundTruth", a) == {"request_id": "req-1", "model_id": "fraud",
                                        "timestamp": 10, "label": "fraud", "value": None}
    assert decode("GroundTruth", b)["value"] == 3.5


def test_the_partitioner_cannot_be_changed():
    with pytest.raises(ValueError, match="murmur2_random"):
        Producer("127.0.0.1:1", partitioner="consistent_random")
    assert Producer("127.0.0.1:1", partitioner="murmur2_random") is not None


def test_retrain_events_decode_from_avro_framed_and_json():
    event = {"event_id": "2d23689e339a45ca0ff186a3aa41e951", "model_id": "fraud",
             "model_version": "v3", "reasons": ["psi:age in DRIFT"], "drift_event_ids": ["a"],
             "metrics": {"accuracy": 0.81}, "train_from": 1, "train_to": 2, "dry_run": True,
             "created_at": 3, "estimated_decay_per_day": None,
             "suggested_retrain_interval_ms": None}
    bare = encode("RetrainEvent", event)
    import json
    for payload in (bare, b"\x00\x00\x00\x00\x07" + bare, json.dumps(event).encode()):
        e = decode_retrain_event(payload)
        assert (e.event_id, e.model_id, e.metrics, e.dry_run) == (
            event["event_id"], "fraud", {"accuracy": 0.81}, True)
    from driftwatch_client import DecodeError
    with pytest.raises(DecodeError):
        decode_retrain_event(bare[:-3])
    with pytest.raises(DecodeError):
        decode_retrain_event(b'{"event_id": "x"}')


def test_an_unreachable_broker_is_a_delivery_error_at_flush():
    p = Producer("127.0.0.1:1", **{"message.timeout.ms": 500})
    p.log_ground_truth("r1", "yes")
    with pytest.raises(DeliveryError) as e:
        p.flush(10)
    assert [f.key for f in e.value.failures] == ["r1"]
    assert "timed out" in str(e.value).lower()
