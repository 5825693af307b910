"""Logging predictions and ground truth to driftwatch's input topics.

Each record is a bare Avro datum of the packaged `Prediction` / `GroundTruth` schema, keyed by
its request id (UTF-8), on a librdkafka producer with `partitioner=murmur2_random`: driftwatch
reads partition *i* of `predictions` with partition *i* of `ground-truth`, so a prediction and
its label must land on the same partition number, and driftwatch's contract is the Java
client's murmur2 (librdkafka's own default, CRC32, would send most labels elsewhere; see
`schemas/README.md`). The setting cannot be overridden.

Delivery is asynchronous, as with any Kafka producer: `log_prediction` and `log_ground_truth`
validate, encode and queue the record and return. Delivery reports are served on every call
and by `flush()`. A record the broker refused or that timed out is remembered; the next
`log_*` call or `flush()` raises a `DeliveryError` listing every such record since the last
one raised (the record of that `log_*` call is then not queued). `flush()` also raises when
records are still queued after its timeout.
"""

from __future__ import annotations

import io
import threading
from typing import Any, Mapping, Optional

import confluent_kafka
import fastavro

from . import _schemas, records
from .errors import DeliveryError, Failure

PARTITIONER = "murmur2_random"


def encode(schema: str, record: Mapping[str, Any]) -> bytes:
    """`record` as a bare Avro datum of the packaged schema `schema`."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _schemas.parsed(schema), record)
    return buf.getvalue()


class Producer:
    """Sends predictions and labels to driftwatch.

    `bootstrap_servers` is Kafka's bootstrap list; every other librdkafka setting goes in
    `kafka_config` with its own name (`**{"linger.ms": 20, "security.protocol": "SSL"}`).
    `partitioner` is always `murmur2_random`: another value raises `ValueError`.
    `predictions_topic` and `ground_truth_topic` name driftwatch's input topics.

    Use as a context manager, or call `flush()` before exiting: records still queued at exit
    are lost.
    """

    def __init__(self, bootstrap_servers: str, *, predictions_topic: str = "predictions",
                 ground_truth_topic: str = "ground-truth", **kafka_config: Any):
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise ValueError("bootstrap_servers must be a non-empty str such as 'host:9092'")
        for name, topic in (("predictions_topic", predictions_topic),
                            ("ground_truth_topic", ground_truth_topic)):
            if not isinstance(topic, str) or not topic:
                raise ValueError(f"{name} must be a non-empty str")
        given = kafka_config.get("partitioner", PARTITIONER)
        if given != PARTITIONER:
            raise ValueError(
                f"partitioner={given!r}: driftwatch joins predictions and labels by partition "
                f"and needs {PARTITIONER!r} (Java's murmur2) on every producer of both topics"
            )
        if "bootstrap.servers" in kafka_config:
            raise ValueError("give bootstrap_servers as the first argument, not in kafka_config")
        config = dict(kafka_config)
        config["bootstrap.servers"] = bootstrap_servers
        config["partitioner"] = PARTITIONER
        self.predictions_topic = predictions_topic
        self.ground_truth_topic = ground_truth_topic
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._producer = confluent_kafka.Producer(config)

    def log_prediction(self, model_id: str, model_version: str, request_id: str,
                       features: Optional[Mapping[str, Any]], prediction: Any,
                       scores: Optional[Mapping[str, float]] = None, timestamp: Any = None, *,
                       tags: Optional[Mapping[str, str]] = None) -> None:
        """Queues one prediction (see `driftwatch_client.records` for what is accepted).

        `prediction` is the predicted class (`str`) or value (a number); `scores` the class
        probabilities; `timestamp` when the prediction was made (epoch ms or an aware
        datetime; default now); `tags` free-form strings (region, tenant…).
        """
        record = records.prediction_record(model_id, model_version, request_id, features,
                                           prediction, scores, timestamp, tags)
        self._send(self.predictions_topic, record["request_id"], encode("Prediction", record))

    def log_ground_truth(self, request_id: str, label: Any, timestamp: Any = None, *,
                         model_id: Optional[str] = None) -> None:
        """Queues the observed outcome of `request_id`: the true class (`str`) or value (a
        number), observed at `timestamp` (default now). `model_id`, when known, lets
        driftwatch attribute a label that never meets its prediction."""
        record = records.ground_truth_record(request_id, label, timestamp, model_id)
        self._send(self.ground_truth_topic, record["request_id"], encode("GroundTruth", record))

    def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until every queued record is delivered (or `timeout` seconds pass); raises
        `DeliveryError` if any record failed since the last error was raised, or if some are
        still queued at the timeout."""
        remaining = self._producer.flush(-1 if timeout is None else timeout)
        self._raise_failures(undelivered=remaining)

    def __len__(self) -> int:
        """Records queued and not yet delivered."""
        return len(self._producer)

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.flush()
        else:
            # Deliver what was queued before the error, without hiding it.
            self._producer.flush(30)

    def _send(self, topic: str, key: str, value: bytes) -> None:
        self._producer.poll(0)
        self._raise_failures()
        while True:
            try:
                self._producer.produce(topic, value=value, key=key.encode("utf-8"),
                                       on_delivery=self._delivered)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                self._producer.poll(0.1)
                self._raise_failures()
            except confluent_kafka.KafkaException as e:
                raise DeliveryError([Failure(topic, key, str(e.args[0] if e.args else e))]) \
                    from e

    def _delivered(self, err, msg) -> None:
        if err is not None:
            key = msg.key()
            with self._lock:
                self._failures.append(Failure(
                    msg.topic(),
                    key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key),
                    str(err),
                ))

    def _raise_failures(self, undelivered: int = 0) -> None:
        with self._lock:
            failures, self._failures = self._failures, []
        if failures or undelivered:
            raise DeliveryError(failures, undelivered)
