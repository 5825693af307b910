"""The client and the real `driftwatch` binary, end to end, on the broker of scripts/kafka.

Predictions and labels written by `Producer` must be joined by a `driftwatch run --role all`
worker exactly as the join rule says — a label matches its prediction when it comes within
`join.label_timeout`, the first label wins, a label without a prediction is an orphan — so
the worker's `driftwatch_join_inputs_total` (its `/metrics`) must equal the offline count of
what was sent, outcome by outcome, model by model. One record lost, misrouted (the client's
partitioner) or mis-decoded (the client's schemas) changes a count and fails the test.

Event times lie two hours back: once the worker has read both inputs, the join's idle
fallback moves its watermark to the present, so every pending prediction expires and every
waiting label becomes an orphan without waiting for real time to pass (docs/OPERATIONS.md,
"End of a stream"). The monitor stage then publishes metrics snapshots of the three models,
read here from the `model-metrics` topic as the client's schemas decode them.
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import fastavro
import pytest
from confluent_kafka import Consumer

from conftest import unique
from driftwatch_client import Producer
from driftwatch_client import _schemas

PREDICTIONS = 2_000
MODELS = 3
ORPHANS = 30
LABEL_TIMEOUT_MS = 10 * 60_000
PARTITIONS = 3
# How long the worker may take to account for every input; a bound on waiting, not a
# figure the test checks.
SETTLE_SECONDS = 240


def scenario(start_ms: int, run: str):
    """The records to send and the counts the join must report, keyed (model, version,
    outcome) as `driftwatch_join_inputs_total` labels them."""
    predictions, labels = [], []
    expected: Counter = Counter()
    for i in range(PREDICTIONS):
        model, rid, tp = f"model-{i % MODELS}", f"{run}-req-{i}", start_ms + i * 1_000
        predicted = "a" if i % 2 else "b"
        predictions.append((model, rid, predicted, tp))
        if i % 5 == 0:
            # Never labeled: expires once the watermark passes tp + label_timeout.
            expected[(model, "v1", "expired_unlabeled")] += 1
        elif i % 97 == 0:
            # Labeled after the timeout: the prediction expired, the label is late (counted
            # under the version of the prediction it came too late for).
            labels.append((model, rid, "a", tp + LABEL_TIMEOUT_MS + 60_000))
            expected[(model, "v1", "expired_unlabeled")] += 1
            expected[(model, "v1", "late")] += 1
        else:
            actual = predicted if i % 4 else "a"
            labels.append((model, rid, actual, tp + 30_000))
            expected[(model, "v1", "matched")] += 1
            if i % 50 == 1:
                # The same label again: the first one won, this one is a duplicate. The
                # matched request keeps no version, so the duplicate has none.
                labels.append((model, rid, actual, tp + 30_000))
                expected[(model, "", "duplicate_label")] += 1
    for j in range(ORPHANS):
        model = f"model-{j % MODELS}"
        labels.append((model, f"{run}-orphan-{j}", "a", start_ms + j * 60_000))
        expected[(model, "", "orphan")] += 1
    # In the order of observation, as a label source writes them: the join's watermark
    # follows each input's event time (less `join.allowed_lateness`), so a label written ten
    # minutes of event time behind the labels before it would come after its prediction
    # expired — late by the join's rule, though not by the offline one. (A stable sort: a
    # duplicate stays behind its original.)
    labels.sort(key=lambda r: r[3])
    return predictions, labels, expected


def test_the_scenario_covers_every_outcome_it_claims():
    # The offline expectation itself: every outcome present for every model, and every
    # input counted once (a pair once as `matched`).
    predictions, labels, expected = scenario(0, "x")
    outcomes = {o for (_, _, o) in expected}
    assert outcomes == {"matched", "expired_unlabeled", "late", "duplicate_label", "orphan"}
    for m in range(MODELS):
        assert all(expected[(f"model-{m}", v, o)] > 0 for (_, v, o) in expected), m
    per = Counter()
    for (_, _, o), n in expected.items():
        per[o] += n
    assert len(predictions) == per["matched"] + per["expired_unlabeled"]
    assert len(labels) == per["matched"] + per["late"] + per["duplicate_label"] + per["orphan"]


SAMPLE = re.compile(r'^driftwatch_join_inputs_total\{([^}]*)\}\s+([0-9.eE+]+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def join_inputs(metrics_text: str) -> Counter:
    """`driftwatch_join_inputs_total` of a Prometheus text page, keyed (model, version,
    outcome); zero samples left out."""
    out: Counter = Counter()
    for line in metrics_text.splitlines():
        m = SAMPLE.match(line.strip())
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(1)))
        value = int(float(m.group(2)))
        if value:
            out[(labels.get("model"), labels.get("version"), labels.get("outcome"))] += value
    return out


def test_join_inputs_are_read_from_the_prometheus_page():
    page = (
        "# TYPE driftwatch_join_inputs_total counter\n"
        'driftwatch_join_inputs_total{model="m",version="v1",outcome="matched"} 12\n'
        'driftwatch_join_inputs_total{model="m",version="",outcome="orphan"} 3\n'
        'driftwatch_join_inputs_total{model="m",version="v1",outcome="late"} 0\n'
        'driftwatch_events_in_total{topic="predictions"} 99\n'
    )
    assert join_inputs(page) == Counter({("m", "v1", "matched"): 12, ("m", "", "orphan"): 3})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode("utf-8")
    except OSError:
        return None


class Worker:
    """A `driftwatch run --role all` process on its own topics and groups."""

    def __init__(self, binary: str, bootstrap: str):
        run = unique("py-roundtrip")
        self.topics = {k: f"{run}-{k.replace('_', '-')}" for k in (
            "predictions", "ground_truth", "model_partials", "dead_letter", "drift_events",
            "retrain_events", "model_metrics", "model_references")}
        self.port = free_port()
        # A clean environment: nothing from the caller's DRIFTWATCH__ settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTWATCH")}
        env.update({f"DRIFTWATCH__TOPICS__{k.upper()}": v for k, v in self.topics.items()})
        env.update({
            "DRIFTWATCH__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "DRIFTWATCH__KAFKA__JOIN_GROUP_ID": f"{run}-join",
            "DRIFTWATCH__MONITOR__GROUP_ID": f"{run}-monitor",
            "DRIFTWATCH__MONITOR__METRICS_INTERVAL": "1s",
            "DRIFTWATCH__MONITOR__COMMIT_INTERVAL": "500ms",
            "DRIFTWATCH__HTTP__BIND": f"127.0.0.1:{self.port}",
            "DRIFTWATCH__JOIN__LABEL_TIMEOUT": f"{LABEL_TIMEOUT_MS}ms",
            "DRIFTWATCH__JOIN__ORPHAN_TIMEOUT": f"{LABEL_TIMEOUT_MS}ms",
            "DRIFTWATCH__JOIN__IDLE_TIMEOUT": "3s",
            "DRIFTWATCH__JOIN__FLUSH_INTERVAL": "500ms",
            "DRIFTWATCH_LOG": "info",
        })
        self.binary, self.env = binary, env
        self.log = Path(tempfile.gettempdir()) / f"{run}.log"
        self.proc: subprocess.Popen | None = None

    def create_topics(self) -> None:
        out = subprocess.run([self.binary, "topics", "create", "--partitions", str(PARTITIONS)],
                             env=self.env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"driftwatch topics create:\n{out.stdout}{out.stderr}"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([self.binary, "run", "--role", "all"], env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=log)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return f"worker log {self.log} (last {lines} lines):\n" + "\n".join(text[-lines:])

    def alive(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, \
            f"the worker exited with {self.proc and self.proc.returncode}\n{self.log_tail()}"

    def wait_ready(self, timeout: float) -> None:
        """Until `/readyz` answers 200: partitions assigned, state restored, producing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.alive()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz",
                                            timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        pytest.fail(f"the worker was not ready within {timeout} s\n{self.log_tail()}")

    def metrics(self) -> str | None:
        return fetch(f"http://127.0.0.1:{self.port}/metrics")

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL if it does not stop within 60 s; the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


def settled_join_inputs(worker: Worker, total: int) -> Counter:
    """The worker's `driftwatch_join_inputs_total` once it counts `total` inputs, or as it
    stands after `SETTLE_SECONDS` (the caller's comparison then says what is missing)."""
    deadline = time.monotonic() + SETTLE_SECONDS
    seen: Counter = Counter()
    while time.monotonic() < deadline:
        worker.alive()
        page = worker.metrics()
        if page is not None:
            seen = join_inputs(page)
            if sum(seen.values()) >= total:
                break
        time.sleep(0.5)
    return seen


@pytest.fixture
def worker(driftwatch_binary, bootstrap):
    w = Worker(driftwatch_binary, bootstrap)
    yield w
    w.stop()


def read_metrics_models(bootstrap: str, topic: str, want: set[str], timeout: float) -> set[str]:
    """Model ids of the `ModelMetrics` snapshots on `topic`, read until `want` are all seen
    or `timeout` seconds passed."""
    schema = _schemas.parsed("ModelMetrics")
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("metrics-reader"),
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    c.subscribe([topic])
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    try:
        while not want <= seen and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error() is not None:
                continue
            record = fastavro.schemaless_reader(io.BytesIO(m.value()), schema, None)
            seen.add(record["model_id"])
    finally:
        c.close()
    return seen


@pytest.mark.broker
@pytest.mark.driftwatch
def test_producer_to_worker_counts_equal_the_offline_expectation(bootstrap, worker):
    run = unique("rt")
    start = int(time.time() * 1000) - 2 * 3_600_000
    predictions, labels, expected = scenario(start, run)
    worker.create_topics()
    t = worker.topics
    worker.start()
    worker.wait_ready(SETTLE_SECONDS)
    # One stream in event-time order, predictions and labels interleaved, as live traffic
    # comes, to the running worker. (Not a backlog of all predictions, then all labels, read
    # by a worker started afterwards: runs of that kind counted some matched pairs as orphan
    # and late, one run in six; that start-up case is left to the Rust tests of the join.)
    stream = sorted([(tp, 0, r) for r in predictions for tp in [r[3]]]
                    + [(tl, 1, r) for r in labels for tl in [r[3]]], key=lambda x: (x[0], x[1]))
    with Producer(bootstrap, predictions_topic=t["predictions"],
                  ground_truth_topic=t["ground_truth"]) as p:
        for _, side, r in stream:
            if side == 0:
                model, rid, predicted, tp = r
                p.log_prediction(model, "v1", rid, {"x": float(tp % 97), "country": "DE"},
                                 predicted, scores={predicted: 0.7}, timestamp=tp)
            else:
                model, rid, label, tl = r
                p.log_ground_truth(rid, label, tl, model_id=model)

    seen = settled_join_inputs(worker, sum(expected.values()))
    assert seen == expected, (
        f"join outcomes differ from the offline count "
        f"(sent {len(predictions)} predictions, {len(labels)} labels):\n"
        f"  missing/short: {dict(expected - seen)}\n  extra: {dict(seen - expected)}\n"
        f"{worker.log_tail()}")

    models = {f"model-{m}" for m in range(MODELS)}
    got = read_metrics_models(bootstrap, t["model_metrics"], models, timeout=120)
    assert got == models, f"metrics snapshots for {got}, expected {models}\n{worker.log_tail()}"

    assert worker.stop() == 0, f"worker exit after SIGTERM\n{worker.log_tail()}"
