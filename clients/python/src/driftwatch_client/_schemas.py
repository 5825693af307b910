"""The wire contract: driftwatch's Avro schemas, as packaged with the client.

The build copies the repository's `schemas/*.avsc` into `driftwatch_client/schemas/` (see
`setup.py`), so an installed client encodes with exactly the schemas of the driftwatch it was
built from. An editable install (`pip install -e`) has no built copy; it reads the repository's
folder directly.

Payloads on driftwatch's topics are bare Avro datums: no schema travels with them. Reader and
writer must therefore use the same schema, and the client decodes driftwatch's output with the
schemas it was built with; fields driftwatch adds later (always with a default) need a client
built from that release.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import fastavro

PACKAGED = Path(__file__).resolve().parent / "schemas"
# src/driftwatch_client/_schemas.py -> the repository's schemas/ (editable installs only).
REPOSITORY = Path(__file__).resolve().parents[4] / "schemas"

RECORDS = (
    "Prediction",
    "GroundTruth",
    "DriftEvent",
    "RetrainEvent",
    "ModelMetrics",
    "ModelPartial",
    "ModelReference",
)


def schema_dir() -> Path:
    """Where the schemas are read from: the packaged copy, else the repository's folder."""
    for d in (PACKAGED, REPOSITORY):
        if (d / "Prediction.avsc").is_file():
            return d
    raise RuntimeError(
        f"driftwatch_client: no Avro schemas in {PACKAGED} (nor {REPOSITORY}): "
        "reinstall the package from the driftwatch repository (pip install clients/python)"
    )


def raw_schema(name: str) -> dict[str, Any]:
    """The schema `name` (e.g. `"Prediction"`) as JSON, exactly as the file holds it."""
    if name not in RECORDS:
        raise KeyError(f"no driftwatch schema named {name!r} (known: {', '.join(RECORDS)})")
    with open(schema_dir() / f"{name}.avsc", encoding="utf-8") as f:
        return json.load(f)


def _without_logical_types(node: Any) -> Any:
    # fastavro turns timestamp-millis into datetime objects on reading; driftwatch's JSON form
    # and its documentation speak of integer milliseconds, so the client keeps the integers.
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


@lru_cache(maxsize=None)
def parsed(name: str) -> Any:
    """The fastavro-parsed schema `name`, timestamps as integer milliseconds."""
    return fastavro.parse_schema(_without_logical_types(raw_schema(name)))


def field_names(name: str) -> list[str]:
    """The top-level field names of record `name`, in schema order."""
    return [f["name"] for f in raw_schema(name)["fields"]]
