"""Store-side events (``message.*``, ``consent.*``, ``customer.*``, ``store.*``, ``order.*``): a log
written in the same transaction as the change it reports, read by consumers with their own cursor
(outbound webhooks, the console).

The API, stable for every caller (campaigns, orders, the service)::

    emit(session, event_type, payload, *, subject_id, occurred_at) -> OutboundEvent

- ``session``: the caller's open SQLModel/SQLAlchemy ``Session``. ``emit`` never commits: the event is
  held on the session and written by the caller's ``commit()`` (a ``before_commit`` hook), so it and
  its cause become visible together; a rollback drops both. (An event emitted inside a savepoint that
  is then rolled back is still written: emit outside ``begin_nested`` blocks you may roll back.)
- ``event_type``: dotted, ``<family>.<past tense>`` (``message.sent``, ``order.ready``); the families a
  webhook filter may name are in ``FAMILIES``; an unknown family is refused (``ValueError``).
- ``payload``: a JSON-serialisable dict of ids and facts. Never a phone number, push token, e-mail or
  position: keys that name one (``PRIVATE_KEYS``) are refused with ``ValueError`` at any depth.
- ``subject_id``: what the event is about (a delivery, customer, order id), the id receivers join on.
- ``occurred_at``: tz-aware UTC time of the change (the caller's ``at``, not the wall clock).
- ``customer_id``, ``device_id`` (optional): whom the event concerns, kept in indexed columns so an
  erasure finds it; by default the payload's own ``customer_id`` / ``device_id``. Pass them when the
  payload must not name the customer (an arrival alert to a store).

It returns the ``OutboundEvent`` (its ``id`` is final; its ``seq`` is None until the commit numbers it).
The body a receiver gets is ``{"type", "timestamp", "data": payload}`` plus ``data["event_id"]``
and ``data["subject_id"]``.

Order: each event takes the next ``seq`` from a one-row counter (``outbound_event_clock``) whose row
lock the emitting transaction holds until it commits (PostgreSQL; SQLite has one writer), so numbers
become visible in commit order and "events with ``seq`` > my cursor" never skips one a slower
transaction commits later (the zone-event log's rule, ``geofence.service.event_log``). Taking the
numbers at commit time (not at ``emit``) keeps that lock to the commit itself: emitting transactions
queue on one row only while they commit, and never hold it while waiting for another row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, delete, insert, or_, select, text
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Session as OrmSession
from sqlmodel import Field, Session, SQLModel, col

from campaigns.storage.columns import as_utc, json_column, new_id, utc_column

__all__ = [
    "FAMILIES", "PRIVATE_KEYS", "OutboundCursor", "OutboundEvent", "OutboundEventClock",
    "OutboundEventRow", "emit", "erase_events_of", "read_after",
]  # fmt: skip

FAMILIES = ("message", "consent", "customer", "store", "order")
# keys no payload may carry, at any depth (a receiver is a third party: ids only)
PRIVATE_KEYS = frozenset(
    {"phone", "phone_e164", "phone_number", "to", "msisdn", "push_token", "token", "fcm_token",
     "email", "lat", "lng", "lon", "latitude", "longitude", "position", "location"}
)  # fmt: skip


class OutboundEventRow(SQLModel, table=True):
    """One store-side event, numbered in commit order."""

    __tablename__ = "outbound_events"

    seq: int = Field(sa_type=BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    id: str = Field(unique=True)  # evt_<hex>: the event_id receivers see
    type: str = Field(index=True)
    subject_id: str = Field(index=True)
    # copied from the payload: what an erasure finds and deletes (``campaigns.privacy``)
    customer_id: str | None = Field(default=None, index=True)
    device_id: str | None = Field(default=None, index=True)
    payload: dict[str, Any] = json_column()
    occurred_at: datetime = utc_column(nullable=False, index=True)


class OutboundEventClock(SQLModel, table=True):
    """One row (``id`` 1): the last ``outbound_events.seq`` handed out."""

    __tablename__ = "outbound_event_clock"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_type=BigInteger)


class OutboundCursor(SQLModel, table=True):
    """A consumer's position in ``outbound_events``: every event with ``seq`` <= ``cursor_seq`` handled."""

    __tablename__ = "outbound_event_cursors"

    name: str = Field(primary_key=True)
    cursor_seq: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime = utc_column(nullable=False)


@dataclass(frozen=True)
class OutboundEvent:
    seq: int | None  # None until the commit that writes it
    id: str
    type: str
    subject_id: str
    payload: dict[str, Any]
    occurred_at: datetime
    customer_id: str | None = None  # whom it concerns (erasure finds it by these)
    device_id: str | None = None


def _private_keys(value: object, path: str = "") -> list[str]:
    if isinstance(value, dict):
        found = [f"{path}{k}" for k in value if str(k).lower() in PRIVATE_KEYS]
        return found + [p for k, v in value.items() for p in _private_keys(v, f"{path}{k}.")]
    if isinstance(value, list):
        return [p for v in value for p in _private_keys(v, path)]
    return []


_PENDING = "outbound_events.pending"  # key in ``session.info``: the events this transaction emitted
_TICK = text("UPDATE outbound_event_clock SET seq = seq + :n WHERE id = 1 RETURNING seq")
# the migration makes the row; this restores it (from the log's head) if something removed it. "WHERE
# true": SQLite would otherwise read ON CONFLICT as part of the SELECT.
_CLOCK_ROW = text(
    "INSERT INTO outbound_event_clock (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM outbound_events"
    " WHERE true ON CONFLICT (id) DO NOTHING"
)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _take_seqs(session: OrmSession, n: int) -> int:
    """The first of ``n`` numbers, under the clock row's lock (held until this transaction ends)."""
    last = session.execute(_TICK, {"n": n}).scalar()
    if last is None:  # a concurrent maker waits here for the first one's commit, then does nothing
        session.execute(_CLOCK_ROW)
        last = session.execute(_TICK, {"n": n}).scalar()
    return int(last or 0) - n + 1


@sa_event.listens_for(OrmSession, "before_commit")
def _write_pending(session: OrmSession) -> None:
    pending: list[OutboundEvent] = session.info.pop(_PENDING, None) or []
    if not pending:
        return
    first = _take_seqs(session, len(pending))
    session.execute(
        insert(OutboundEventRow.__table__),  # type: ignore[arg-type]
        [
            {"seq": first + k, "id": e.id, "type": e.type, "subject_id": e.subject_id, "payload": e.payload,
             "customer_id": e.customer_id, "device_id": e.device_id,
             "occurred_at": e.occurred_at}
            for k, e in enumerate(pending)
        ],
    )


@sa_event.listens_for(OrmSession, "after_soft_rollback")
def _drop_pending(session: OrmSession, previous_transaction: Any) -> None:
    if not previous_transaction.nested:
        session.info.pop(_PENDING, None)


def emit(
    session: Session,
    event_type: str,
    payload: dict[str, Any],
    *,
    subject_id: str,
    occurred_at: datetime,
    customer_id: str | None = None,
    device_id: str | None = None,
) -> OutboundEvent:
    """Record ``event_type`` about ``subject_id``, written by the caller's commit (see the module
    docstring).

    Raises ``ValueError`` for an unknown family, a naive ``occurred_at``, a payload that is not JSON
    or that names a phone number, token or position.
    """
    family = event_type.split(".", 1)[0]
    if family not in FAMILIES or "." not in event_type:
        raise ValueError(f"event type {event_type!r}: expected <family>.<name>, family in {FAMILIES}")
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware")
    if bad := _private_keys(payload):
        raise ValueError(f"payload may not carry {bad} (no phone, token or position leaves the engine)")
    try:
        json.dumps(payload)  # now, in the caller's code, rather than at its commit
    except TypeError as exc:
        raise ValueError(f"payload is not JSON: {exc}") from None
    event = OutboundEvent(
        seq=None, id=f"evt_{new_id()}", type=event_type, subject_id=subject_id, payload=dict(payload),
        occurred_at=occurred_at, customer_id=customer_id or _text(payload.get("customer_id")),
        device_id=device_id or _text(payload.get("device_id")),
    )
    session.connection()  # a transaction is open: the commit that writes the event will come
    session.info.setdefault(_PENDING, []).append(event)
    return event


def _event(row: OutboundEventRow) -> OutboundEvent:
    return OutboundEvent(
        seq=int(row.seq), id=row.id, type=row.type, subject_id=row.subject_id,
        payload=dict(row.payload), occurred_at=as_utc(row.occurred_at) or row.occurred_at,
        customer_id=row.customer_id, device_id=row.device_id,
    )


def read_after(session: Session, seq: int, limit: int) -> list[OutboundEvent]:
    """The next ``limit`` events after ``seq``, in order."""
    rows = session.execute(
        select(OutboundEventRow).where(col(OutboundEventRow.seq) > seq)
        .order_by(col(OutboundEventRow.seq)).limit(limit)
    ).scalars()
    return [_event(r) for r in rows]


def erase_events_of(session: Session, customer_id: str, device_ids: Sequence[str]) -> int:
    """Delete the events naming the customer or one of their devices (erasure), written or still
    pending in this transaction; returns how many were written. Deliveries of them to webhooks are the
    service's to delete first (``LocationData.erase``)."""
    pending: list[OutboundEvent] = session.info.get(_PENDING) or []
    theirs = {customer_id, *device_ids}
    pending[:] = [
        e for e in pending if not ({e.customer_id, e.device_id} & theirs)
    ]
    return int(
        session.execute(delete(OutboundEventRow).where(events_of(customer_id, device_ids))).rowcount  # type: ignore[attr-defined]
        or 0
    )


def events_of(customer_id: str, device_ids: Sequence[str]) -> Any:
    """The WHERE clause: events naming the customer or one of ``device_ids``."""
    clause = col(OutboundEventRow.customer_id) == customer_id
    return or_(clause, col(OutboundEventRow.device_id).in_(list(device_ids))) if device_ids else clause
