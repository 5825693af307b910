"""The Airflow example, without Airflow: the DAG file is parsed with `ast`, never imported
(scripts/test does not install Airflow); the sensor's match function runs on real records."""

import ast
import json
from pathlib import Path

from conftest import EXAMPLES, default_topic, retrain_event_record, schema_fields
from driftwatch_client.producer import encode

import driftwatch_retrain

DAG = EXAMPLES / "airflow" / "retrain_dag.py"


def tree() -> ast.Module:
    return ast.parse(DAG.read_text(), filename=str(DAG))


def test_the_dag_imports_the_providers_await_message_sensor():
    imports = {(n.module, a.name) for n in ast.walk(tree()) if isinstance(n, ast.ImportFrom)
               for a in n.names}
    assert ("airflow.providers.apache.kafka.sensors.kafka", "AwaitMessageSensor") in imports


def sensor_call() -> ast.Call:
    calls = [n for n in ast.walk(tree()) if isinstance(n, ast.Call)
             and getattr(n.func, "id", None) == "AwaitMessageSensor"]
    assert len(calls) == 1
    return calls[0]


def constants() -> dict:
    return {t.id: n.value.value for n in tree().body if isinstance(n, ast.Assign)
            for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value, ast.Constant)}


def test_the_sensor_waits_on_the_retrain_topic_with_the_match_function():
    kw = {k.arg: k.value for k in sensor_call().keywords}
    topics = kw["topics"]
    assert isinstance(topics, ast.List) and len(topics.elts) == 1
    assert constants()[topics.elts[0].id] == default_topic("retrain_events")
    assert ast.literal_eval(kw["apply_function"]) == "driftwatch_retrain.match_retrain_event"
    assert hasattr(driftwatch_retrain, "match_retrain_event")
    args = kw["apply_function_kwargs"]
    assert [ast.literal_eval(k) for k in args.keys] == ["model_id"]
    # The training task reads the key the sensor pushes.
    assert ast.literal_eval(kw["xcom_push_key"]) in DAG.read_text().split("xcom_pull", 1)[1]


class Message:
    """The part of confluent_kafka.Message the match function uses."""

    def __init__(self, value: bytes):
        self._value = value

    def value(self) -> bytes:
        return self._value


def test_the_match_function_passes_its_models_advice_in_either_encoding():
    record = retrain_event_record()
    for payload in (encode("RetrainEvent", record), json.dumps(record).encode()):
        got = driftwatch_retrain.match_retrain_event(Message(payload), "fraud")
        assert got == {k: record[k] for k in driftwatch_retrain.PASSED_FIELDS}


def test_the_match_function_skips_other_models_and_dry_runs():
    other = encode("RetrainEvent", retrain_event_record(model_id="churn"))
    dry = encode("RetrainEvent", retrain_event_record(dry_run=True))
    assert driftwatch_retrain.match_retrain_event(Message(other), "fraud") is None
    assert driftwatch_retrain.match_retrain_event(Message(dry), "fraud") is None


def test_the_training_task_reads_only_passed_schema_fields():
    assert set(driftwatch_retrain.PASSED_FIELDS) <= set(schema_fields("RetrainEvent"))
    used = {n.slice.value for n in ast.walk(tree()) if isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name) and n.value.id == "event"
            and isinstance(n.slice, ast.Constant)}
    assert used and used <= set(driftwatch_retrain.PASSED_FIELDS), used
