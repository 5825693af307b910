"""The schemas the installed client encodes with are the repository's, byte for byte."""

from pathlib import Path

import driftwatch_client._schemas as schemas
from conftest import REPO, on_ci

import pytest


def test_packaged_schemas_equal_the_repository_schemas():
    repo = sorted((REPO / "schemas").glob("*.avsc"))
    assert repo, "no schemas in the repository"
    used = schemas.schema_dir()
    if used != schemas.PACKAGED:
        if on_ci():
            pytest.fail(f"CI: the client reads {used}, not a packaged copy: install it with "
                        "`pip install clients/python`, not in editable mode")
        pytest.skip("editable install: no packaged copy to compare")
    packaged = sorted(used.glob("*.avsc"))
    assert [p.name for p in packaged] == [p.name for p in repo]
    for a, b in zip(packaged, repo):
        assert a.read_bytes() == b.read_bytes(), f"{a.name} differs from {b}"
    assert sorted(schemas.RECORDS) == sorted(p.stem for p in repo)


def test_event_classes_carry_every_schema_field():
    import dataclasses

    from driftwatch_client import DriftEvent, RetrainEvent

    for cls, name in ((RetrainEvent, "RetrainEvent"), (DriftEvent, "DriftEvent")):
        have = {f.name for f in dataclasses.fields(cls)}
        missing = set(schemas.field_names(name)) - have
        assert not missing, f"{cls.__name__} lacks {missing}"
