"""The client against the real broker of scripts/kafka: partitions, delivery errors, and the
listener's at-least-once commits."""

import pytest
from confluent_kafka import Consumer

from conftest import create_topic, unique
from driftwatch_client import DeliveryError, Producer, RetrainListener
from driftwatch_client.producer import encode


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), as a signed 32-bit int."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length % 4
    base = length - tail
    if tail == 3:
        h ^= data[base + 2] << 16
    if tail >= 2:
        h ^= data[base + 1] << 8
    if tail >= 1:
        h ^= data[base]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_murmur2_matches_kafkas_test_vectors():
    # From Kafka's UtilsTest.testMurmur2.
    assert murmur2(b"21") == -973932308
    assert murmur2(b"foobar") == -790332482
    assert murmur2(b"a-little-bit-long-string") == -985981536
    assert murmur2(b"a-little-bit-longer-string") == -1486304829
    assert murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") == -58897971
    assert murmur2(b"abc") == 479470107


def read_all(bootstrap, topic, n, timeout=60):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    import time
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            out.append(m)
    c.close()
    return out


@pytest.mark.broker
def test_records_land_on_their_keys_murmur2_partition(bootstrap):
    preds, labels = unique("predictions"), unique("ground-truth")
    create_topic(bootstrap, preds, 4)
    create_topic(bootstrap, labels, 4)
    with Producer(bootstrap, predictions_topic=preds, ground_truth_topic=labels) as p:
        for i in range(200):
            p.log_prediction("m", "v1", f"req-{i}", {"x": float(i)}, "a", timestamp=1_000 + i)
            p.log_ground_truth(f"req-{i}", "a", 2_000 + i)
    for topic in (preds, labels):
        got = read_all(bootstrap, topic, 200)
        assert len(got) == 200
        assert {m.partition() for m in got} == {0, 1, 2, 3}
        for m in got:
            assert m.partition() == java_partition(m.key(), 4), m.key()


@pytest.mark.broker
def test_a_record_the_broker_refuses_is_a_delivery_error(bootstrap):
    topic = unique("small")
    create_topic(bootstrap, topic, 1, **{"max.message.bytes": "1000"})
    p = Producer(bootstrap, predictions_topic=topic)
    p.log_prediction("m", "v1", "too-big", {f"f{i}": float(i) for i in range(200)}, "a")
    with pytest.raises(DeliveryError) as e:
        p.flush(30)
    assert [f.key for f in e.value.failures] == ["too-big"]
    assert "too large" in str(e.value).lower()


def retrain(i, model="m"):
    return encode("RetrainEvent", {
        "event_id": f"{i:032x}", "model_id": model, "model_version": "v1", "reasons": ["r"],
        "drift_event_ids": [], "metrics": {"accuracy": 0.5}, "train_from": i, "train_to": i + 1,
        "dry_run": False, "created_at": i, "estimated_decay_per_day": None,
        "suggested_retrain_interval_ms": None})


@pytest.mark.broker
def test_the_listener_commits_only_what_its_handler_finished(bootstrap):
    from confluent_kafka import Producer as Raw

    topic, group = unique("retrain-events"), unique("retrainer")
    create_topic(bootstrap, topic, 1)
    raw = Raw({"bootstrap.servers": bootstrap})
    for i in range(5):
        raw.produce(topic, key=b"m" if i != 1 else b"other", value=retrain(i, "m" if i != 1 else "other"))
    raw.flush(30)
    cfg = dict(retrain_topic=topic, model_ids=["m"], **{"auto.offset.reset": "earliest"})

    seen = []

    def fails_on_third(e):
        seen.append(e.train_from)
        if e.train_from == 3:
            raise RuntimeError("training failed to start")

    with RetrainListener(bootstrap, group, **cfg) as listener:
        with pytest.raises(RuntimeError):
            listener.run(fails_on_third, idle_timeout=20)
    assert seen == [0, 2, 3]  # model "other" skipped
    # The failed event and what follows come again; the handled ones do not.
    with RetrainListener(bootstrap, group, **cfg) as listener:
        again = [e.train_from for e in listener.events(idle_timeout=8)]
    assert again == [3, 4]
    with RetrainListener(bootstrap, group, **cfg) as listener:
        assert list(listener.events(idle_timeout=5)) == []
