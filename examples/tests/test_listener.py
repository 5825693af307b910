"""The listener example's command building (examples/listener/retrain_listener.py)."""

import pytest

from conftest import default_topic, retrain_event_record, schema_fields
from driftwatch_client import RetrainEvent

import retrain_listener as rl


def event(**overrides) -> RetrainEvent:
    return RetrainEvent(**retrain_event_record(**overrides))


def test_every_field_of_the_command_is_filled_in():
    cmd = rl.build_command(
        ["./train.sh", "--model={model_id}", "{model_version}", "{train_from}..{train_to}",
         "--run", "{event_id}", "{reasons}", "{dry_run}", "{estimated_decay_per_day}"],
        event())
    assert cmd == ["./train.sh", "--model=fraud", "v3", "1700000000000..1700086400000",
                   "--run", "0f" * 16, "accuracy dropped,psi on amount", "false", ""]


def test_a_field_value_stays_one_argument_whatever_it_holds():
    # No shell: a model id with spaces and shell syntax is one argument, not a command.
    cmd = rl.build_command(["train", "{model_id}"], event(model_id="x; rm -rf / #"))
    assert cmd == ["train", "x; rm -rf / #"]


def test_the_template_check_refuses_unknown_fields_and_an_empty_command():
    rl.check_template(["train", "{model_id}", "{train_to}"])
    with pytest.raises(ValueError, match="unknown field {model}"):
        rl.check_template(["train", "{model}"])
    with pytest.raises(ValueError, match="only plain"):
        rl.check_template(["train", "{train_from:>20}"])
    with pytest.raises(ValueError, match="no command"):
        rl.check_template([])


def test_the_template_fields_are_the_retrain_event_schema_and_the_default_topic():
    assert set(rl.FIELDS) <= set(schema_fields("RetrainEvent"))
    assert set(schema_fields("RetrainEvent")) - set(rl.FIELDS) == {"metrics"}
    import inspect
    assert f'default="{default_topic("retrain_events")}"' in inspect.getsource(rl.main)
