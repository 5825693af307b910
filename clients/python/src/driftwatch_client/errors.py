"""The client's exceptions.

Invalid input raises the built-in `TypeError` (a value of the wrong type, an unknown keyword)
or `ValueError` (an empty id, NaN, an infinity) before anything is sent. What goes wrong after
a record left the caller's hands is a `DeliveryError`; what cannot be read back is a
`DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Failure:
    """One record the broker did not take: where it was going, its key, librdkafka's error."""

    topic: str
    key: str
    error: str


class DriftwatchError(Exception):
    """Base class of the client's own errors."""


class DeliveryError(DriftwatchError):
    """Records were not delivered (broker refused them, or they timed out in the queue).

    `failures` lists every record that failed since the last time a `DeliveryError` was
    raised (or since the producer was made); `undelivered` counts records still queued when
    `flush` gave up waiting.
    """

    def __init__(self, failures: list[Failure], undelivered: int = 0):
        self.failures = list(failures)
        self.undelivered = undelivered
        parts = []
        if self.failures:
            first = self.failures[0]
            parts.append(
                f"{len(self.failures)} record(s) not delivered; first: key {first.key!r} "
                f"to {first.topic}: {first.error}"
            )
        if undelivered:
            parts.append(f"{undelivered} record(s) still queued when flush timed out")
        super().__init__("; ".join(parts) or "delivery failed")


class DecodeError(DriftwatchError):
    """A record on one of driftwatch's output topics could not be decoded."""

    def __init__(self, message: str, topic: str | None = None, partition: int | None = None,
                 offset: int | None = None):
        where = ""
        if topic is not None:
            where = f" ({topic} [{partition}] at offset {offset})"
        super().__init__(message + where)
        self.topic = topic
        self.partition = partition
        self.offset = offset
