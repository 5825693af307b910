"""Records framed by confluent-kafka's own `AvroSerializer` through a real schema registry,
read by a running `driftwatch` that resolves their writer schemas from the same registry.

This is what a model server using the Confluent serializer sends: the serializer registers
driftwatch's `Prediction` and `GroundTruth` schemas under `<topic>-value` on the registry of
scripts/schema-registry (Apicurio Registry's Confluent-compatible API) and frames each datum
with the id it got (`0x00`, 4-byte id, datum). The worker, given `schema_registry.url`, must
join them exactly as the offline rule of `test_roundtrip.scenario` says, outcome by outcome,
model by model: an id it could not resolve would dead-letter the record and change a count.
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer as KafkaProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from conftest import unique
from driftwatch_client import _schemas, records
from test_roundtrip import SETTLE_SECONDS, Worker, scenario, settled_join_inputs


@pytest.fixture
def registry_worker(driftwatch_binary, bootstrap, schema_registry):
    w = Worker(driftwatch_binary, bootstrap)
    w.env["DRIFTWATCH__SCHEMA_REGISTRY__URL"] = schema_registry
    yield w
    w.stop()


@pytest.mark.broker
@pytest.mark.driftwatch
def test_records_of_the_confluent_serializer_are_joined_exactly(
        bootstrap, schema_registry, registry_worker):
    worker = registry_worker
    run = unique("sr")
    start = int(time.time() * 1000) - 2 * 3_600_000
    predictions, labels, expected = scenario(start, run)
    worker.create_topics()
    t = worker.topics
    worker.start()
    worker.wait_ready(SETTLE_SECONDS)

    client = SchemaRegistryClient({"url": schema_registry})
    prediction_value = AvroSerializer(client, json.dumps(_schemas.raw_schema("Prediction")))
    label_value = AvroSerializer(client, json.dumps(_schemas.raw_schema("GroundTruth")))
    # murmur2_random: the partition of a request id is the one the join expects.
    producer = KafkaProducer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                              "enable.idempotence": True})
    errors: list[str] = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    stream = sorted([(r[3], 0, r) for r in predictions] + [(r[3], 1, r) for r in labels],
                    key=lambda x: (x[0], x[1]))
    for _, side, r in stream:
        if side == 0:
            model, rid, predicted, tp = r
            record = records.prediction_record(model, "v1", rid, {"x": float(tp % 97)},
                                               predicted, scores={predicted: 0.7},
                                               timestamp=tp)
            topic, value = t["predictions"], prediction_value
        else:
            model, rid, label, tl = r
            record = records.ground_truth_record(rid, label, tl, model_id=model)
            topic, value = t["ground_truth"], label_value
        payload = value(record, SerializationContext(topic, MessageField.VALUE))
        assert payload[:1] == b"\x00", "the serializer frames its records"
        producer.produce(topic, key=rid.encode(), value=payload, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(60) == 0 and not errors, errors

    seen = settled_join_inputs(worker, sum(expected.values()))
    assert seen == expected, (
        f"join outcomes differ from the offline count:\n"
        f"  missing/short: {dict(expected - seen)}\n  extra: {dict(seen - expected)}\n"
        f"{worker.log_tail()}")
    assert worker.stop() == 0, f"worker exit after SIGTERM\n{worker.log_tail()}"
