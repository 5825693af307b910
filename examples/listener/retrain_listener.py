#!/usr/bin/env python3
"""Runs a command for every retrain event of driftwatch (at least once).

    retrain_listener.py --bootstrap kafka:9092 --group retrainer --model fraud -- \
        ./train.sh --model {model_id} --from {train_from} --to {train_to} --run {event_id}

Each argument after `--` is a template: `{field}` is replaced by that field of the event
(`schemas/RetrainEvent.avsc`: event_id, model_id, model_version, train_from, train_to,
created_at, dry_run; `reasons` and `drift_event_ids` are joined with commas). The command runs
without a shell, so a field cannot inject shell syntax. The event is committed only once the
command exited 0; a failing command stops the listener with its exit code, and the event comes
again on the next start (`driftwatch_client.RetrainListener`). Use `event_id` to make the
command idempotent: it is the same every time the same advice is delivered.
"""

from __future__ import annotations

import argparse
import string
import subprocess
import sys
from typing import Sequence

from driftwatch_client import RetrainEvent, RetrainListener

# The fields a template may name (RetrainEvent.avsc).
FIELDS = ("event_id", "model_id", "model_version", "reasons", "drift_event_ids", "train_from",
          "train_to", "dry_run", "created_at", "estimated_decay_per_day",
          "suggested_retrain_interval_ms")


def field_values(event: RetrainEvent) -> dict[str, str]:
    """Each template field of `event` as the text put into the command."""
    values = {}
    for name in FIELDS:
        v = getattr(event, name)
        if isinstance(v, list):
            v = ",".join(v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif v is None:
            v = ""
        values[name] = str(v)
    return values


def check_template(template: Sequence[str]) -> None:
    """Raises `ValueError` naming a `{field}` the events do not have (before any event)."""
    if not template:
        raise ValueError("no command given after --")
    for arg in template:
        for _, name, spec, conv in string.Formatter().parse(arg):
            if name is not None and name not in FIELDS:
                raise ValueError(f"unknown field {{{name}}} in {arg!r}; known: {', '.join(FIELDS)}")
            if spec or conv:
                raise ValueError(f"{arg!r}: only plain {{field}} placeholders are supported")


def build_command(template: Sequence[str], event: RetrainEvent) -> list[str]:
    """The argument list to run for `event`: every `{field}` of `template` filled in."""
    values = field_values(event)
    return [arg.format(**values) for arg in template]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    ap.add_argument("--group", default="driftwatch-retrainer", help="consumer group")
    ap.add_argument("--topic", default="retrain-events", help="driftwatch's topics.retrain_events")
    ap.add_argument("--model", action="append", help="only these model ids (repeatable)")
    ap.add_argument("--skip-dry-run", action="store_true",
                    help="commit and skip events with dry_run = true")
    args = ap.parse_args(own)
    check_template(command)
    with RetrainListener(args.bootstrap, args.group, retrain_topic=args.topic,
                         model_ids=args.model) as listener:
        for event in listener:
            if args.skip_dry_run and event.dry_run:
                continue
            cmd = build_command(command, event)
            print(f"retrain {event.model_id} {event.model_version} ({event.event_id}): {cmd}",
                  flush=True)
            done = subprocess.run(cmd)
            if done.returncode != 0:
                # Not committed: the event comes again when the listener restarts.
                print(f"command exited {done.returncode}; stopping", file=sys.stderr)
                return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
