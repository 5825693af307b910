"""The Argo Events example: both manifests parse and read what driftwatch writes."""

import re

import yaml

from conftest import EXAMPLES, default_topic, schema_fields

ARGO = EXAMPLES / "argo"


def load(name: str) -> dict:
    docs = list(yaml.safe_load_all((ARGO / name).read_text()))
    assert len(docs) == 1
    return docs[0]


def test_the_event_source_reads_the_retrain_topic_as_json():
    es = load("eventsource.yaml")
    assert es["kind"] == "EventSource"
    (name, kafka), = es["spec"]["kafka"].items()
    assert kafka["topic"] == default_topic("retrain_events")
    assert kafka["jsonBody"] is True
    sensor = load("sensor.yaml")
    dep, = sensor["spec"]["dependencies"]
    assert (dep["eventSourceName"], dep["eventName"]) == (es["metadata"]["name"], name)


def test_every_body_field_the_sensor_reads_is_a_retrain_event_field():
    text = (ARGO / "sensor.yaml").read_text()
    used = set(re.findall(r"body\.(\w+)", text))
    assert {"event_id", "model_id", "train_from", "train_to", "dry_run"} <= used
    assert used <= set(schema_fields("RetrainEvent")), used - set(schema_fields("RetrainEvent"))


def test_each_trigger_parameter_fills_a_declared_workflow_argument():
    sensor = load("sensor.yaml")
    trigger, = sensor["spec"]["triggers"]
    wf = trigger["template"]["argoWorkflow"]
    declared = wf["source"]["resource"]["spec"]["arguments"]["parameters"]
    params = wf["parameters"]
    assert len(params) == len(declared)
    for p in params:
        m = re.fullmatch(r"spec\.arguments\.parameters\.(\d+)\.value", p["dest"])
        assert m and int(m.group(1)) < len(declared), p["dest"]
        assert p["src"]["dependencyName"] == "retrain"
    assert sorted(int(p["dest"].split(".")[3]) for p in params) == list(range(len(declared)))
