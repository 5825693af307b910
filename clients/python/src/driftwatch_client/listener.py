"""Acting on driftwatch's retrain (and drift) events, at least once.

A `RetrainListener` is a Kafka consumer in group `group_id` on the `retrain-events` topic (and,
if asked, `drift-events`). It hands each event to your code and commits the event's offset only
after your code returned:

- `listener.run(handler)`: `handler(event)` is called for each event; its offset is committed
  when the handler returns. If the handler raises, nothing is committed, the exception
  propagates, and the event is delivered again to the next listener of the group (this one
  restarted, or another).
- `for event in listener:`: the event is committed when the loop asks for the next one, that
  is once the loop body finished. Leaving the loop (`break`, `return`, an exception) leaves the
  current event uncommitted: it is delivered again. Call `listener.commit(event)` before
  `break` to avoid that.

That is *at-least-once*: an event can be handled twice (a crash between the handler's end and
the commit, a rebalance while the handler runs), never zero times once published. Make the
handler idempotent: every event carries `event_id`, the same for the same decision however
often driftwatch publishes it, so "skip ids already handled" (e.g. the training run's name)
makes a second delivery harmless.

Events are handled one at a time, in order per partition. Kafka expels a consumer that does not
poll for `max.poll.interval.ms` (default 5 minutes) and hands its partitions to another member:
start long training jobs from the handler (a workflow, a DAG run) rather than running them in
it, or raise that setting.

A new group starts at the end of the topics (`auto.offset.reset=latest`): events published
before the group first joined are not handled. Pass `**{"auto.offset.reset": "earliest"}` to
handle those too.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Iterator, Optional

import confluent_kafka

from .events import Event, decode_drift_event, decode_retrain_event

log = logging.getLogger("driftwatch_client")


class RetrainListener:
    """Retrain (and drift) events of driftwatch, committed after they are handled.

    `model_ids`, when given, restricts the events handed out to those models; the others are
    committed and skipped. Every other librdkafka consumer setting goes in `kafka_config`
    (`**{"security.protocol": "SSL"}`); automatic commits cannot be switched on.
    """

    def __init__(self, bootstrap_servers: str, group_id: str, *,
                 retrain_topic: str = "retrain-events", drift_topic: Optional[str] = None,
                 model_ids: Optional[Iterable[str]] = None, poll_timeout: float = 1.0,
                 **kafka_config: Any):
        if not isinstance(bootstrap_servers, str) or not bootstrap_servers.strip():
            raise ValueError("bootstrap_servers must be a non-empty str such as 'host:9092'")
        if not isinstance(group_id, str) or not group_id:
            raise ValueError("group_id must be a non-empty str")
        for key in ("enable.auto.commit", "enable.auto.offset.store"):
            if str(kafka_config.get(key, "false")).lower() not in ("false", "0"):
                raise ValueError(f"{key} cannot be switched on: the listener commits each event "
                                 "after its handler returned (at-least-once)")
        if isinstance(model_ids, str):
            raise TypeError("model_ids must be a collection of str, not one str")
        self.model_ids = None if model_ids is None else frozenset(model_ids)
        self.poll_timeout = poll_timeout
        self._decoders: dict[str, Callable[..., Event]] = {retrain_topic: decode_retrain_event}
        if drift_topic is not None:
            self._decoders[drift_topic] = decode_drift_event
        config = {"auto.offset.reset": "latest", **kafka_config}
        config.update({
            "bootstrap.servers": bootstrap_servers,
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        })
        self._consumer = confluent_kafka.Consumer(config)
        self._consumer.subscribe(list(self._decoders))
        self._closed = False

    def __iter__(self) -> Iterator[Event]:
        return self.events()

    def events(self, *, idle_timeout: Optional[float] = None,
               max_events: Optional[int] = None) -> Iterator[Event]:
        """Events as they come, each committed once the consumer asks for the next. Ends
        after `max_events` events, or when none came for `idle_timeout` seconds; by default
        it never ends."""
        handed = 0
        pending: Optional[Event] = None
        idle_since = time.monotonic()
        while True:
            if pending is not None:
                self.commit(pending)
                pending = None
            if max_events is not None and handed >= max_events:
                return
            if idle_timeout is not None and time.monotonic() - idle_since >= idle_timeout:
                return
            msg = self._consumer.poll(self.poll_timeout)
            if msg is None:
                continue
            idle_since = time.monotonic()
            event = self._event_of(msg)
            if event is None:
                continue
            pending = event
            handed += 1
            yield event

    def run(self, handler: Callable[[Event], Any], *, idle_timeout: Optional[float] = None,
            max_events: Optional[int] = None) -> int:
        """Calls `handler(event)` for each event and commits the event when it returns;
        returns how many were handled (it ends as `events` does)."""
        handled = 0
        for event in self.events(idle_timeout=idle_timeout, max_events=max_events):
            handler(event)
            handled += 1
        return handled

    def commit(self, event: Event) -> None:
        """Commits `event` (and every earlier event of its partition) synchronously. A commit
        the group refuses (the partition moved to another member meanwhile) is logged: the
        event will be delivered again there, as at-least-once allows."""
        if event.topic is None or event.partition is None or event.offset is None:
            raise ValueError("only an event this listener handed out can be committed")
        tp = confluent_kafka.TopicPartition(event.topic, event.partition, event.offset + 1)
        try:
            self._consumer.commit(offsets=[tp], asynchronous=False)
        except confluent_kafka.KafkaException as e:
            log.warning("commit of %s [%d] offset %d failed (the event will be delivered again): "
                        "%s", event.topic, event.partition, event.offset, e)

    def close(self) -> None:
        """Leaves the group. Uncommitted events are delivered again to the group."""
        if not self._closed:
            self._closed = True
            self._consumer.close()

    def __enter__(self) -> "RetrainListener":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _event_of(self, msg) -> Optional[Event]:
        err = msg.error()
        if err is not None:
            if err.code() == confluent_kafka.KafkaError._PARTITION_EOF:
                return None
            if err.fatal():
                raise confluent_kafka.KafkaException(err)
            # Transient (a topic not created yet, a broker restarting): librdkafka retries.
            log.warning("consumer: %s", err)
            return None
        decode = self._decoders[msg.topic()]
        event = decode(msg.value() or b"", topic=msg.topic(), partition=msg.partition(),
                       offset=msg.offset())
        if self.model_ids is not None and event.model_id not in self.model_ids:
            self.commit(event)
            return None
        return event
