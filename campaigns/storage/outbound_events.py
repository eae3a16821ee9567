"""Store-side events (``message.*``, ``consent.*``, ``customer.*``, ``store.*``, ``order.*``): a log
written in the same transaction as the change it reports, read by consumers with their own cursor
(outbound webhooks, the console).

The API, stable for every caller (campaigns, orders, the service)::

    emit(session, event_type, payload, *, subject_id, occurred_at) -> OutboundEvent

- ``session``: the caller's open SQLModel/SQLAlchemy ``Session``; ``emit`` adds a row and flushes, it
  never commits — the caller's ``commit()`` makes the event and its cause visible together, and a
  rollback drops both. Call it last, right before the commit (see "Order" below).
- ``event_type``: dotted, ``<family>.<past tense>`` (``message.sent``, ``order.ready``); the families a
  webhook filter may name are in ``FAMILIES``; an unknown family is refused (``ValueError``).
- ``payload``: a JSON-serialisable dict of ids and facts. Never a phone number, push token, e-mail or
  position: keys that name one (``PRIVATE_KEYS``) are refused with ``ValueError`` at any depth.
- ``subject_id``: what the event is about (a delivery, customer, order id), the id receivers join on.
- ``occurred_at``: tz-aware UTC time of the change (the caller's ``at``, not the wall clock).

The body a receiver gets is ``{"type", "timestamp", "data": payload}`` plus ``data["event_id"]``
and ``data["subject_id"]``.

Order: each event takes the next ``seq`` from a one-row counter (``outbound_event_clock``) whose row
lock the emitting transaction holds until it commits (PostgreSQL; SQLite has one writer), so numbers
become visible in commit order and "events with ``seq`` > my cursor" never skips one a slower
transaction commits later (the zone-event log's rule, ``geofence.service.event_log``). The price:
emitting transactions queue on that row from ``emit`` to their commit — hence "call it last".
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, select, text
from sqlmodel import Field, Session, SQLModel, col

from campaigns.storage.columns import as_utc, json_column, new_id, utc_column

__all__ = [
    "FAMILIES", "PRIVATE_KEYS", "OutboundCursor", "OutboundEvent", "OutboundEventClock",
    "OutboundEventRow", "emit", "read_after",
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
    seq: int
    id: str
    type: str
    subject_id: str
    payload: dict[str, Any]
    occurred_at: datetime


def _private_keys(value: object, path: str = "") -> list[str]:
    if isinstance(value, dict):
        found = [f"{path}{k}" for k in value if str(k).lower() in PRIVATE_KEYS]
        return found + [p for k, v in value.items() for p in _private_keys(v, f"{path}{k}.")]
    if isinstance(value, list):
        return [p for v in value for p in _private_keys(v, path)]
    return []


_TICK = text("UPDATE outbound_event_clock SET seq = seq + 1 WHERE id = 1 RETURNING seq")
# the migration makes the row; this restores it (from the log's head) if something removed it. "WHERE
# true": SQLite would otherwise read ON CONFLICT as part of the SELECT.
_CLOCK_ROW = text(
    "INSERT INTO outbound_event_clock (id, seq) SELECT 1, COALESCE(MAX(seq), 0) FROM outbound_events"
    " WHERE true ON CONFLICT (id) DO NOTHING"
)


def _next_seq(session: Session) -> int:
    """The next number, under the clock row's lock (held until the caller's transaction ends)."""
    seq = session.execute(_TICK).scalar()
    if seq is None:  # a concurrent maker waits here for the first one's commit, then does nothing
        session.execute(_CLOCK_ROW)
        seq = session.execute(_TICK).scalar()
    return int(seq or 0)


def emit(
    session: Session,
    event_type: str,
    payload: dict[str, Any],
    *,
    subject_id: str,
    occurred_at: datetime,
) -> OutboundEvent:
    """Record ``event_type`` about ``subject_id`` in the caller's transaction (not committed here).

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
    json.dumps(payload)  # TypeError now, in the caller's transaction, rather than at delivery
    row = OutboundEventRow(
        seq=_next_seq(session), id=f"evt_{new_id()}", type=event_type, subject_id=subject_id,
        payload=payload, occurred_at=occurred_at,
    )
    session.add(row)
    session.flush()
    return _event(row)


def _event(row: OutboundEventRow) -> OutboundEvent:
    return OutboundEvent(
        seq=int(row.seq), id=row.id, type=row.type, subject_id=row.subject_id,
        payload=dict(row.payload), occurred_at=as_utc(row.occurred_at) or row.occurred_at,
    )


def read_after(session: Session, seq: int, limit: int) -> list[OutboundEvent]:
    """The next ``limit`` events after ``seq``, in order."""
    rows = session.execute(
        select(OutboundEventRow).where(col(OutboundEventRow.seq) > seq)
        .order_by(col(OutboundEventRow.seq)).limit(limit)
    ).scalars()
    return [_event(r) for r in rows]
