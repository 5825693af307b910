"""The broker rule of tests/support/broker.rs, for the Python suite.

1. `DRIFTWATCH_TEST_BOOTSTRAP` (scripts/test exports it): that address, as given.
2. Else the `bootstrap` file of `DRIFTWATCH_KAFKA_DIR` (default `<repo>/.kafka`), if it answers.
3. Else no broker: under CI (`CI` set, not `false`/`0`) a test that needs one fails; elsewhere
   it is skipped with the reason.
"""

import os
import socket
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def on_ci() -> bool:
    v = os.environ.get("CI", "").strip()
    return bool(v) and v != "0" and v.lower() != "false"


def _answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def test_broker():
    b = os.environ.get("DRIFTWATCH_TEST_BOOTSTRAP", "").strip()
    if b:
        return b
    state = Path(os.environ.get("DRIFTWATCH_KAFKA_DIR") or REPO / ".kafka")
    try:
        b = (state / "bootstrap").read_text().strip()
    except OSError:
        return None
    return b if b and _answers(b) else None


test_broker.__test__ = False


def require(what: str, why: str):
    """Fails under CI, skips elsewhere."""
    if on_ci():
        pytest.fail(f"CI: {what} is required: {why}", pytrace=False)
    pytest.skip(f"{what} missing: {why}")


@pytest.fixture(scope="session")
def bootstrap():
    b = test_broker()
    if b is None:
        require("the Kafka broker of scripts/kafka",
                "DRIFTWATCH_TEST_BOOTSTRAP is unset and no .kafka/bootstrap answers "
                "(run scripts/test, or scripts/kafka start)")
    return b


@pytest.fixture(scope="session")
def schema_registry():
    """The URL of the real schema registry of scripts/schema-registry (Apicurio's Confluent
    API): `DRIFTWATCH_TEST_SCHEMA_REGISTRY` (scripts/test exports it), else the `url` file of
    `DRIFTWATCH_SR_DIR` (default `<repo>/.schema-registry`); fails under CI without one."""
    u = os.environ.get("DRIFTWATCH_TEST_SCHEMA_REGISTRY", "").strip()
    if not u:
        state = Path(os.environ.get("DRIFTWATCH_SR_DIR") or REPO / ".schema-registry")
        try:
            u = (state / "url").read_text().strip()
        except OSError:
            u = ""
    if not u:
        require("the schema registry of scripts/schema-registry",
                "DRIFTWATCH_TEST_SCHEMA_REGISTRY is unset and no .schema-registry/url exists "
                "(run scripts/test, or scripts/schema-registry start)")
    return u


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:10]}"


def create_topic(bootstrap: str, name: str, partitions: int, **configs: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, partitions, 1, config=configs)])
    for f in futures.values():
        f.result(30)


@pytest.fixture(scope="session")
def driftwatch_binary():
    """The `driftwatch` binary of `DRIFTWATCH_BINARY` (scripts/test sets it to the binary the
    Rust integration tests built): fails under CI when it is not there, skips elsewhere."""
    path = os.environ.get("DRIFTWATCH_BINARY", "").strip()
    if not path:
        require("the driftwatch binary",
                "DRIFTWATCH_BINARY is unset (scripts/test sets it; by hand: "
                "cargo build -p driftwatch-cli and point it at target/debug/driftwatch)")
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        require("the driftwatch binary", f"DRIFTWATCH_BINARY={path} is no executable file")
    return path
