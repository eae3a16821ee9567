"""Zone events as a durable log, read by consumers that each keep their own cursor in the database.

The rule that makes a cursor safe: ``zone_events.seq`` numbers are taken under the presence clock's
row lock, which the writing transaction holds until it commits (PostgreSQL; SQLite has one writer), so
they become visible in order. A reader that has seen ``seq`` = n has seen every event numbered below n,
and "events with ``seq`` > my cursor" never passes one that a slower transaction commits later.
(A plain sequence or identity column would not do: numbers are handed out at insert, not at commit.)

Delivery is at least once: a consumer handles a batch, then moves its cursor past it, so a crash in
between hands the batch again; a consumer's effects are idempotent by event id (the campaign consumer:
a unique key per campaign and event). An event a consumer fails on is recorded in ``consumer_failures``
and the cursor moves on — later events and other consumers are not held up; the failure is retried
with backoff, then parked with its error until an operator retries it (``/v1/admin/consumers``).
On PostgreSQL a pass holds an advisory lock named after the consumer: one process consumes at a time
(a killed one releases it with its connection).
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter, Gauge
from sqlalchemy import Connection, delete, func, select, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.metrics import REGISTRY
from geofence.service.tables._types import as_utc
from geofence.service.tables.consumers import ConsumerFailureRow, EventConsumerRow
from geofence.service.tables.presence import ZoneEventRow

log = logging.getLogger(__name__)

CONSUMER_EVENTS = Counter(
    "geofence_consumer_events_total",
    "Zone events handled by each log consumer, by outcome (handled | failed | retried | parked).",
    ["consumer", "outcome"],
    registry=REGISTRY,
)
CONSUMER_PARKED = Gauge(
    "geofence_consumer_parked_events",
    "Events a consumer gave up on after its retries, waiting for an operator (read at scrape time).",
    ["consumer"],
    registry=REGISTRY,
)
CONSUMER_LAG = Gauge(
    "geofence_consumer_lag_events",
    "Events in the log past the consumer's cursor (read at scrape time).",
    ["consumer"],
    registry=REGISTRY,
)

Handle = Callable[[ZoneEvent], object]
FAILURE_CHECK_S = 1.0  # failures due again are looked for at most this often (retries wait seconds anyway)


@dataclass(frozen=True)
class Consumer:
    """A reader of the log. ``handle`` raises to fail an event, and must be idempotent by event id."""

    name: str
    handle: Handle


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for failed events: ``first_delay`` doubling up to ``max_delay``; parked at ``max_attempts``."""

    max_attempts: int = 5
    first_delay: timedelta = timedelta(seconds=2)
    max_delay: timedelta = timedelta(minutes=10)

    def delay(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failure (1 = the first)."""
        wait: timedelta = self.first_delay * 2 ** max(0, attempts - 1)
        return min(self.max_delay, wait)


def to_event(row: ZoneEventRow) -> ZoneEvent:
    return ZoneEvent(
        id=row.id, zone_id=row.zone_id, device_id=row.device_id or "",  # "" once its owner was erased
        kind=TransitionKind(row.kind), at=as_utc(row.at) or row.at,
        visit_id=row.visit_id, reason=row.reason, lat=row.lat, lng=row.lng,
    )


def read_after(session: Session, seq: int, limit: int) -> list[tuple[int, ZoneEvent]]:
    """The next ``limit`` events of the log after ``seq``, in order."""
    rows = session.execute(
        select(ZoneEventRow).where(col(ZoneEventRow.seq) > seq).order_by(col(ZoneEventRow.seq)).limit(limit)
    ).scalars()
    return [(int(r.seq), to_event(r)) for r in rows]


def append(engine: Engine, events: Sequence[ZoneEvent], *, recorded_at: datetime) -> None:
    """Write events to the log in their own transaction (the ingest writes them with its presences)."""
    from geofence.service.db import ConnectionUnit
    from geofence.service.unit_of_work import SqlEventStore

    with ConnectionUnit(engine) as unit:
        SqlEventStore(unit).add(events, recorded_at=recorded_at)
        unit.commit()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _exclusive(conn: Connection, name: str) -> bool:
    """One consuming process per consumer on PostgreSQL (a transaction-scoped advisory lock)."""
    if conn.dialect.name != "postgresql":
        return True  # SQLite: effects are idempotent anyway; a second worker only duplicates reads
    key = zlib.crc32(f"geofence.consumer:{name}".encode()) - 2**31
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())


class ConsumerRunner:
    """Runs one consumer: new events after its cursor, then its failures that are due again."""

    def __init__(
        self,
        engine: Engine,
        consumer: Consumer,
        *,
        now: Callable[[], datetime],
        retry: RetryPolicy | None = None,
        batch: int = 200,
        threads: int = 1,
        after_event: Callable[[], None] | None = None,
        after_pass: Callable[[], None] | None = None,
        failure_check_s: float = FAILURE_CHECK_S,
    ) -> None:
        self.engine = engine
        self.consumer = consumer
        self.now = now
        self.retry = retry or RetryPolicy()
        self.batch = batch
        # devices decided side by side (each device's events in log order): a decision mostly waits
        # on database round trips
        self.threads = threads
        self.after_event = after_event  # after each event handled (wake what it fed, in-process)
        self.after_pass = after_pass  # after a pass that handled something (e.g. NOTIFY other processes)
        self._has_cursor = False  # its row exists (made at the first pass)
        self.failure_check_s = failure_check_s
        self._failures_checked = -math.inf  # monotonic time of the last look for due failures

    @property
    def name(self) -> str:
        return self.consumer.name

    def run_once(self) -> bool:
        """One pass; True when more may be waiting (a full batch)."""
        with self.engine.connect() as lock:
            if not _exclusive(lock, self.name):
                return False
            more, handled = self._new_events()
            retried = 0
            if time.monotonic() - self._failures_checked >= self.failure_check_s:  # not a query every pass
                self._failures_checked = time.monotonic()
                retried = self._due_failures()
            lock.rollback()  # releases the advisory lock
        if (handled or retried) and self.after_pass is not None:
            self.after_pass()
        return more

    def retry_due_failures(self) -> int:
        """Only the failed events due again (a consumer fed by the bus rather than by this cursor: an
        operator's retry of a parked event lands here); how many were tried."""
        with self.engine.connect() as lock:
            if not _exclusive(lock, self.name):
                return 0
            retried = self._due_failures()
            lock.rollback()
        return retried

    def _handle(self, event: ZoneEvent) -> str | None:
        """The consumer's handler; the error's text when it fails."""
        try:
            self.consumer.handle(event)
        except Exception as exc:  # recorded, retried later: later events go on
            log.warning("consumer %s failed on event %s: %s", self.name, event.id, _error_text(exc))
            return _error_text(exc)
        if self.after_event is not None:
            self.after_event()
        return None

    def _handle_all(self, events: list[tuple[int, ZoneEvent]]) -> list[tuple[int, ZoneEvent, str]]:
        """Each device's events in order, devices side by side on ``threads`` threads."""
        def device_events(group: list[tuple[int, ZoneEvent]]) -> list[tuple[int, ZoneEvent, str]]:
            return [(seq, e, error) for seq, e in group if (error := self._handle(e)) is not None]

        groups: dict[str, list[tuple[int, ZoneEvent]]] = {}
        for seq, event in events:
            groups.setdefault(event.device_id, []).append((seq, event))
        if self.threads <= 1 or len(groups) == 1:
            results = [device_events(g) for g in groups.values()]
        else:
            with ThreadPoolExecutor(min(self.threads, len(groups))) as pool:
                results = list(pool.map(device_events, groups.values()))
        return sorted((f for group in results for f in group), key=lambda f: f[0])

    def _make_cursor(self) -> None:
        with Session(self.engine) as session:
            if session.get(EventConsumerRow, self.name) is None:
                session.add(EventConsumerRow(name=self.name, cursor_seq=0, updated_at=self.now()))
                session.commit()
        self._has_cursor = True

    def _new_events(self) -> tuple[bool, int]:
        if not self._has_cursor:
            self._make_cursor()
        cursor = (
            select(col(EventConsumerRow.cursor_seq)).where(col(EventConsumerRow.name) == self.name)
        ).scalar_subquery()
        with Session(self.engine, expire_on_commit=False) as session:  # one read: cursor and events
            rows = session.execute(
                select(ZoneEventRow).where(col(ZoneEventRow.seq) > cursor)
                .order_by(col(ZoneEventRow.seq)).limit(self.batch)
            ).scalars()
            events = [(int(r.seq or 0), to_event(r)) for r in rows]
            session.rollback()
        if not events:
            return False, 0
        failed = self._handle_all(events)
        at = self.now()
        with Session(self.engine) as session:  # the failures and the cursor move together
            known = set(
                session.execute(
                    select(col(ConsumerFailureRow.event_id)).where(
                        col(ConsumerFailureRow.consumer) == self.name,
                        col(ConsumerFailureRow.event_id).in_([e.id for _, e, _ in failed]),
                    )
                ).scalars()
            ) if failed else set()
            for seq, event, error in failed:
                if event.id not in known:  # handed again after a crash: the first record stands
                    session.add(ConsumerFailureRow(
                        consumer=self.name, event_id=event.id, seq=seq, attempts=1, last_error=error,
                        first_failed_at=at, next_attempt_at=at + self.retry.delay(1),
                        parked_at=at if self.retry.max_attempts <= 1 else None,
                    ))
            session.execute(
                update(EventConsumerRow)
                .where(col(EventConsumerRow.name) == self.name)
                .where(col(EventConsumerRow.cursor_seq) < events[-1][0])
                .values(cursor_seq=events[-1][0], updated_at=at)
            )
            session.commit()
        CONSUMER_EVENTS.labels(self.name, "handled").inc(len(events) - len(failed))
        if failed:
            CONSUMER_EVENTS.labels(self.name, "failed").inc(len(failed))
        return len(events) == self.batch, len(events)

    def _due_failures(self) -> int:
        at = self.now()
        with Session(self.engine, expire_on_commit=False) as session:
            due = list(session.execute(
                select(ConsumerFailureRow, ZoneEventRow)
                .join(ZoneEventRow, col(ZoneEventRow.id) == col(ConsumerFailureRow.event_id), isouter=True)
                .where(col(ConsumerFailureRow.consumer) == self.name)
                .where(col(ConsumerFailureRow.parked_at).is_(None))
                .where(col(ConsumerFailureRow.next_attempt_at) <= at)
                .order_by(col(ConsumerFailureRow.seq))
                .limit(self.batch)
            ).all())
            session.expunge_all()  # kept as plain values past the read
            session.rollback()
        for failure, row in due:
            self._settle(failure, None if row is None else self._handle(to_event(row)))
        return len(due)

    def _settle(self, failure: ConsumerFailureRow, error: str | None) -> None:
        at = self.now()
        key = (col(ConsumerFailureRow.consumer) == self.name,
               col(ConsumerFailureRow.event_id) == failure.event_id)
        with Session(self.engine) as session:
            if error is None:  # handled (or the event is gone: erased)
                session.execute(delete(ConsumerFailureRow).where(*key))
                CONSUMER_EVENTS.labels(self.name, "retried").inc()
            else:
                attempts = failure.attempts + 1
                parked = attempts >= self.retry.max_attempts
                values = {"attempts": attempts, "last_error": error, "parked_at": at if parked else None,
                          "next_attempt_at": at + self.retry.delay(attempts)}
                session.execute(update(ConsumerFailureRow).where(*key).values(**values))
                CONSUMER_EVENTS.labels(self.name, "parked" if parked else "failed").inc()
                if parked:
                    log.error("consumer %s parked event %s after %d attempts: %s",
                              self.name, failure.event_id, attempts, error)
            session.commit()


# -- operations: what the admin routes and /metrics show -------------------------------------------
@dataclass(frozen=True)
class ConsumerState:
    name: str
    cursor_seq: int
    lag: int
    retrying: int
    parked: int


def consumer_states(session: Session, names: Sequence[str] = ()) -> list[ConsumerState]:
    """Every consumer with a cursor (and ``names`` even before their first pass)."""
    head = int(session.execute(select(func.coalesce(func.max(col(ZoneEventRow.seq)), 0))).scalar_one())
    cursors = {r.name: int(r.cursor_seq) for r in session.execute(select(EventConsumerRow)).scalars()}
    counts: dict[tuple[str, bool], int] = {}
    for consumer, parked, n in session.execute(
        select(col(ConsumerFailureRow.consumer), col(ConsumerFailureRow.parked_at).is_not(None), func.count())
        .group_by(col(ConsumerFailureRow.consumer), col(ConsumerFailureRow.parked_at).is_not(None))
    ).all():
        counts[(consumer, bool(parked))] = counts.get((consumer, bool(parked)), 0) + int(n)
    every = sorted(set(cursors) | set(names) | {c for c, _ in counts})
    return [
        ConsumerState(name=n, cursor_seq=cursors.get(n, 0), lag=max(0, head - cursors.get(n, 0)),
                      retrying=counts.get((n, False), 0), parked=counts.get((n, True), 0))
        for n in every
    ]


def refresh_consumer_gauges(session: Session) -> None:
    for state in consumer_states(session):
        CONSUMER_PARKED.labels(state.name).set(state.parked)
        CONSUMER_LAG.labels(state.name).set(state.lag)


def parked_events(
    session: Session, consumer: str, *, limit: int = 100, offset: int = 0
) -> list[ConsumerFailureRow]:
    return list(session.execute(
        select(ConsumerFailureRow)
        .where(col(ConsumerFailureRow.consumer) == consumer, col(ConsumerFailureRow.parked_at).is_not(None))
        .order_by(col(ConsumerFailureRow.seq))
        .offset(offset)
        .limit(limit)
    ).scalars())


def retry_parked(session: Session, consumer: str, event_id: str, *, at: datetime) -> bool:
    """Make a parked event due now, with a fresh round of attempts. False when it is not parked."""
    result = session.execute(
        update(ConsumerFailureRow)
        .where(col(ConsumerFailureRow.consumer) == consumer, col(ConsumerFailureRow.event_id) == event_id)
        .where(col(ConsumerFailureRow.parked_at).is_not(None))
        .values(parked_at=None, attempts=0, next_attempt_at=at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
