"""Retrain a model when driftwatch advises it: wait for the model's retrain event, then train.

Needs apache-airflow-providers-apache-kafka (AwaitMessageSensor, deferred to the triggerer),
driftwatch-client (clients/python) on the workers and the triggerer, `driftwatch_retrain.py`
beside this file, and a connection `driftwatch_kafka` of type kafka whose extra is the consumer
configuration, e.g. {"bootstrap.servers": "kafka:9092", "group.id": "airflow-retrain-fraud",
"auto.offset.reset": "latest"}.

`@continuous` with one active run: a run waits for the next event, trains, and the next run
waits again.
"""

from __future__ import annotations

import pendulum
from airflow.decorators import task
from airflow.models.dag import DAG
from airflow.providers.apache.kafka.sensors.kafka import AwaitMessageSensor

MODEL_ID = "fraud"
# driftwatch's topics.retrain_events (default "retrain-events").
RETRAIN_TOPIC = "retrain-events"

with DAG(
    dag_id=f"retrain_{MODEL_ID}_on_driftwatch_advice",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    schedule="@continuous",
    max_active_runs=1,
    catchup=False,
    tags=["driftwatch"],
) as dag:
    wait = AwaitMessageSensor(
        task_id="wait_for_retrain_event",
        kafka_config_id="driftwatch_kafka",
        topics=[RETRAIN_TOPIC],
        apply_function="driftwatch_retrain.match_retrain_event",
        apply_function_kwargs={"model_id": MODEL_ID},
        xcom_push_key="retrain_event",
    )

    @task
    def train(ti=None):
        event = ti.xcom_pull(task_ids="wait_for_retrain_event", key="retrain_event")
        # Replace with the real training: the event says which data to train on
        # (train_from .. train_to, epoch milliseconds). event_id names the run, so a retry
        # of this task trains the same advice again rather than a new one.
        print(f"training {event['model_id']} (was {event['model_version']}) on "
              f"[{event['train_from']}, {event['train_to']}) for advice {event['event_id']}: "
              f"{'; '.join(event['reasons'])}")

    wait >> train()
