"""Zone events on the bus (``GEOFENCE_BUS=nats://…``): the database log relayed to a JetStream stream,
and the log's consumers reading that stream instead of their own database cursor.

The relay is a consumer of the database log like any other (its cursor in ``event_consumers``, one
process at a time under an advisory lock), with one difference: it never skips an event. It publishes a
batch with ``Nats-Msg-Id`` = event id, waits for JetStream to acknowledge every message, then moves its
cursor; a crash in between republishes the batch and JetStream drops the repeats (duplicate window).

A stream consumer is a durable JetStream pull consumer shared by every worker process that runs it:
JetStream hands each event to one of them and hands it again when it is not acknowledged within
``ack_wait`` (a worker killed mid-batch). A handler that raises gets the event again after the retry
policy's delay (``nak``); at its last attempt the event is parked in ``consumer_failures`` — the same
record, admin API and metrics as the database path — and terminated on the stream. Effects stay
idempotent by event id (campaign decisions: a unique key per campaign and event), so a redelivery after
a crash decides nothing twice. Events of one device may be handled by two workers at once: the decision
rules hold under concurrency (cap reservations are unique rows), not by ordering.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from nats.js import api
from prometheus_client import Counter
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.event_log import (
    CONSUMER_EVENTS,
    FAILURE_CHECK_S,
    Consumer,
    ConsumerRunner,
    RetryPolicy,
    _error_text,
    _exclusive,
    read_after,
)
from geofence.service.lazy_bridge import LazyBridge
from geofence.service.metrics import REGISTRY
from geofence.service.nats_bridge import Delivery, Outgoing
from geofence.service.settings import EventStreamSettings
from geofence.service.tables.consumers import ConsumerFailureRow, EventConsumerRow

log = logging.getLogger(__name__)
RELAY = "bus-relay"
SEQ_HEADER = "Geofence-Seq"  # the event's place in the database log (cursor and parked records)
DEVICE_HEADER = "Geofence-Device"  # groups a batch by device without decoding it (an opaque device id)
FETCH_WAIT_S = 1.0  # a pull waits this long for messages (the loop's idle rhythm)

RELAYED = Counter(
    "geofence_bus_events_published_total",
    "Zone events the relay published to the stream, by result (stored | duplicate).",
    ["result"], registry=REGISTRY,
)


# -- the message ------------------------------------------------------------------------------------
def encode_event(event: ZoneEvent) -> bytes:
    doc = {"id": event.id, "zone_id": event.zone_id, "device_id": event.device_id, "kind": str(event.kind),
           "at": event.at.isoformat(), "visit_id": event.visit_id, "reason": event.reason,
           "lat": event.lat, "lng": event.lng}
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_event(data: bytes) -> ZoneEvent:
    doc = json.loads(data)
    return ZoneEvent(id=doc["id"], zone_id=doc["zone_id"], device_id=doc["device_id"],
                     kind=TransitionKind(doc["kind"]), at=datetime.fromisoformat(doc["at"]),
                     visit_id=doc["visit_id"], reason=doc["reason"], lat=doc["lat"], lng=doc["lng"])


def stream_config(conf: EventStreamSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=conf.name, subjects=[f"{conf.subject_prefix}.>"], storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,  # each consumer keeps its own place; old events age out
        num_replicas=conf.replicas, max_age=float(conf.max_age_s),
        duplicate_window=float(conf.duplicate_window_s),
    )


def _advance_cursor(engine: Engine, name: str, seq: int, *, at: datetime) -> None:
    """``event_consumers.cursor_seq`` up to ``seq`` (never back), the row made on first use."""
    with Session(engine) as session:
        moved = session.execute(
            update(EventConsumerRow).where(col(EventConsumerRow.name) == name)
            .where(col(EventConsumerRow.cursor_seq) < seq).values(cursor_seq=seq, updated_at=at)
        )
        if not moved.rowcount and session.get(EventConsumerRow, name) is None:  # type: ignore[attr-defined]
            session.add(EventConsumerRow(name=name, cursor_seq=seq, updated_at=at))
        try:
            session.commit()
        except IntegrityError:  # another worker made the row first: go again, it moves or stays
            session.rollback()
            _advance_cursor(engine, name, seq, at=at)


# -- the relay: database log -> stream ----------------------------------------------------------------
def _switch_over(session: Session) -> int:
    """Where a first relay starts: after what every database consumer has already handled (a deployment
    moving from the embedded path to the bus), else at the log's beginning."""
    cursors = [int(c) for c in session.execute(
        select(col(EventConsumerRow.cursor_seq)).where(col(EventConsumerRow.name) != RELAY)
    ).scalars()]
    return min(cursors) if cursors else 0

class EventRelay:
    """Publishes the committed log, in ``seq`` order, to the stream (one process at a time)."""

    def __init__(self, engine: Engine, bridge: LazyBridge, conf: EventStreamSettings, *,
                 now: Callable[[], datetime], batch: int = 500) -> None:
        self.engine, self.bridge, self.conf, self.now, self.batch = engine, bridge, conf, now, batch
        self._stream_ready = False

    def run_once(self) -> bool:
        """One batch; True when more may be waiting. Raises (the loop retries) when the bus is away."""
        bridge = self.bridge.get()
        if not self._stream_ready:
            bridge.ensure_stream(stream_config(self.conf))
            self._stream_ready = True
        with self.engine.connect() as lock:
            if not _exclusive(lock, RELAY):
                return False
            with Session(self.engine) as session:
                row = session.get(EventConsumerRow, RELAY)
                after = int(row.cursor_seq) if row else _switch_over(session)
                events = read_after(session, after, self.batch)
            if not events:
                return False
            acks = bridge.publish_all([
                Outgoing(f"{self.conf.subject_prefix}.{event.kind}", encode_event(event), event.id,
                         {SEQ_HEADER: str(seq), DEVICE_HEADER: event.device_id})
                for seq, event in events
            ])
            _advance_cursor(self.engine, RELAY, events[-1][0], at=self.now())
            lock.rollback()  # releases the advisory lock
        duplicates = sum(1 for a in acks if a.duplicate)
        RELAYED.labels("stored").inc(len(acks) - duplicates)
        if duplicates:
            RELAYED.labels("duplicate").inc(duplicates)
        return len(events) == self.batch


# -- a consumer of the stream ---------------------------------------------------------------------
class StreamConsumer:
    """One log consumer (``campaigns``, ``webhooks``…) fed by its durable JetStream consumer."""

    def __init__(
        self, engine: Engine, consumer: Consumer, bridge: LazyBridge, conf: EventStreamSettings, *,
        now: Callable[[], datetime], retry: RetryPolicy, threads: int = 1,
        after_event: Callable[[], None] | None = None, after_pass: Callable[[], None] | None = None,
    ) -> None:
        self.engine, self.consumer, self.bridge, self.conf = engine, consumer, bridge, conf
        self.now, self.retry, self.after_pass = now, retry, after_pass
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix=f"bus:{consumer.name}") if threads > 1 \
            else None
        # an operator's retry of a parked event is run by the database path's runner, from the log row
        self.parked = ConsumerRunner(engine, consumer, now=now, retry=retry, after_event=after_event)
        self.after_event = after_event
        self._failures_checked = -math.inf
        self._stream_ready = False

    @property
    def name(self) -> str:
        return self.consumer.name

    def consumer_config(self) -> api.ConsumerConfig:
        # max_deliver unlimited on purpose: a worker killed at the last delivery would make JetStream drop
        # the event silently; this class counts attempts (num_delivered) and parks with the reason instead
        return api.ConsumerConfig(
            durable_name=self.name, name=self.name, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL, ack_wait=self.conf.ack_wait_s, max_deliver=-1,
            max_ack_pending=self.conf.max_ack_pending, filter_subject=f"{self.conf.subject_prefix}.>",
        )

    def run_once(self) -> bool:
        """Pull a batch, handle it, settle each message; True when something came (pull again at once)."""
        if time.monotonic() - self._failures_checked >= FAILURE_CHECK_S:
            self._failures_checked = time.monotonic()
            self.parked.retry_due_failures()
        bridge = self.bridge.get()
        if not self._stream_ready:  # whichever of relay and consumers starts first makes the stream
            bridge.ensure_stream(stream_config(self.conf))
            self._stream_ready = True
        deliveries = bridge.fetch(self.conf.name, self.consumer_config(), batch=self.conf.batch,
                                  timeout_s=FETCH_WAIT_S)
        if not deliveries:
            return False
        errors = self._handle_all(deliveries)
        acks, naks, terms = [], [], []
        for d in deliveries:
            error = errors.get(d.stream_seq)
            if error is None:
                acks.append(d.msg)
            elif d.delivered >= self.retry.max_attempts:
                self._park(d, error)  # recorded before the stream forgets it: a crash here parks it again
                terms.append(d.msg)
            else:
                naks.append((d.msg, self.retry.delay(d.delivered).total_seconds()))
        bridge.settle(acks, naks, terms)
        handled = [_seq(d) for d in deliveries if d.stream_seq not in errors]
        if handled:
            _advance_cursor(self.engine, self.name, max(handled), at=self.now())
        CONSUMER_EVENTS.labels(self.name, "handled").inc(len(acks))
        if naks:
            CONSUMER_EVENTS.labels(self.name, "failed").inc(len(naks))
        if terms:
            CONSUMER_EVENTS.labels(self.name, "parked").inc(len(terms))
        if acks and self.after_pass is not None:
            self.after_pass()
        return True

    def _handle(self, d: Delivery) -> str | None:
        try:
            self.consumer.handle(decode_event(d.data))
        except Exception as exc:  # retried after a delay, then parked: later events go on
            log.warning("stream consumer %s failed on message %d (attempt %d): %s",
                        self.name, d.stream_seq, d.delivered, _error_text(exc))
            return _error_text(exc)
        if self.after_event is not None:
            self.after_event()
        return None

    def _handle_all(self, deliveries: list[Delivery]) -> dict[int, str]:
        """Errors by stream sequence; each device's events in stream order, devices side by side."""
        groups: dict[str, list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault(d.headers.get(DEVICE_HEADER, ""), []).append(d)

        def device_events(group: list[Delivery]) -> list[tuple[int, str]]:
            return [(d.stream_seq, error) for d in group if (error := self._handle(d)) is not None]

        if self._pool is None or len(groups) == 1:
            results = [device_events(g) for g in groups.values()]
        else:
            results = list(self._pool.map(device_events, groups.values()))
        return {seq: error for group in results for seq, error in group}

    def _park(self, d: Delivery, error: str) -> None:
        event_id, at = d.headers.get("Nats-Msg-Id") or decode_event(d.data).id, self.now()
        with Session(self.engine) as session:
            row = session.exec(select(ConsumerFailureRow).where(
                col(ConsumerFailureRow.consumer) == self.name, col(ConsumerFailureRow.event_id) == event_id
            )).first()
            if row is None:
                row = ConsumerFailureRow(consumer=self.name, event_id=event_id, seq=_seq(d),
                                         attempts=d.delivered, last_error=error, first_failed_at=at,
                                         next_attempt_at=at)
            row.attempts, row.last_error, row.parked_at = d.delivered, error, at
            session.add(row)
            session.commit()
        log.error("stream consumer %s parked event %s after %d attempts: %s", self.name, event_id,
                  d.delivered, error)


def _seq(d: Delivery) -> int:
    return int(d.headers.get(SEQ_HEADER, "0"))
