"""Store-side events (``outbound_events``: messages, consent, opt-outs, arrivals, orders) into webhook
deliveries: one per (endpoint, event) that wants it, on the ``store`` stream of each endpoint.

The relay's cursor moves in the same transaction as the deliveries it writes, and only from the
position it read (a compare-and-set): a crash, or a second worker doing the same pass, adds nothing
twice. Events arrive in the log's commit order (``campaigns.storage.outbound_events``), so the
deliveries of a pass are settled at once — unlike zone events, no ``seq`` waits for a neighbour.

The log is kept ``webhooks.store_events_retention_days`` (30) and then purged (``purge_store_events``,
a worker job): an event is deleted once it is that old, every relay has passed it and no message of it
is still waiting to be sent (a store alert whose event is gone is cancelled, not sent). A replay reaches
back as far as the log does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from campaigns.storage.outbound_events import OutboundCursor, OutboundEvent, OutboundEventRow, read_after
from geofence.service.event_retention import CHUNK, passed_by_every_cursor, pending_messages
from geofence.service.tables._types import as_utc, new_id
from geofence.service.tables.webhooks import WebhookDeliveryRow, WebhookEndpointRow
from geofence.service.webhooks import STORE_STREAM, wants

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

STORE_CURSOR = "webhooks"
PURGE_EVERY_S = 6 * 3600.0
log = logging.getLogger(__name__)


def store_payload(event: OutboundEvent) -> str:
    """The body: ``{"type", "timestamp", "data"}``, ``data`` being the emitted payload plus the
    event's id and subject (emit refused anything naming a phone, token or position)."""
    data = {**event.payload, "event_id": event.id, "subject_id": event.subject_id}
    return json.dumps(
        {"type": event.type, "timestamp": event.occurred_at.isoformat(), "data": data},
        separators=(",", ":"),
        sort_keys=True,
        default=str,
    )


def _zone_of(event: OutboundEvent) -> str | None:
    zone = event.payload.get("zone_id")
    return zone if isinstance(zone, str) else None


def store_delivery(endpoint_id: str, event: OutboundEvent, at: datetime) -> WebhookDeliveryRow:
    return WebhookDeliveryRow(
        id=f"msg_{new_id()}",
        endpoint_id=endpoint_id,
        event_id=event.id,
        event_type=event.type,
        stream=STORE_STREAM,
        seq=int(event.seq or 0),
        occurred_at=event.occurred_at,
        payload=store_payload(event),
        next_attempt_at=at,
        created_at=at,
    )


class StoreEventRelay:
    """One pass: the events after the cursor, a delivery per interested enabled endpoint, the cursor
    moved past them — all in one transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime],
        batch: int = 500,
        after_pass: Callable[[], None] | None = None,
        cursor: str = STORE_CURSOR,
    ) -> None:
        self.engine, self.now, self.batch, self.cursor = engine, now, batch, cursor
        self.after_pass = after_pass

    def _position(self, session: Session) -> int:
        row = session.get(OutboundCursor, self.cursor)
        if row is not None:
            return int(row.cursor_seq)
        try:
            session.add(OutboundCursor(name=self.cursor, cursor_seq=0, updated_at=self.now()))
            session.commit()
        except IntegrityError:  # another process made it
            session.rollback()
        return 0

    def run_once(self) -> bool:
        """True when a full batch went (more may be waiting)."""
        with Session(self.engine) as session:
            position = self._position(session)
            events = read_after(session, position, self.batch)
            if not events:
                session.rollback()
                return False
            endpoints = list(
                session.execute(
                    select(WebhookEndpointRow).where(col(WebhookEndpointRow.disabled_at).is_(None))
                ).scalars()
            )
            done = {  # a replay may have written some already
                (endpoint_id, event_id)
                for endpoint_id, event_id in session.execute(
                    select(col(WebhookDeliveryRow.endpoint_id), col(WebhookDeliveryRow.event_id)).where(
                        col(WebhookDeliveryRow.event_id).in_([e.id for e in events])
                    )
                )
            }
            at, added = self.now(), 0
            for event in events:
                for endpoint in endpoints:
                    if (endpoint.id, event.id) not in done and wants(endpoint, event.type, _zone_of(event)):
                        session.add(store_delivery(endpoint.id, event, at))
                        added += 1
            moved = session.execute(
                update(OutboundCursor)
                .where(col(OutboundCursor.name) == self.cursor, col(OutboundCursor.cursor_seq) == position)
                .values(cursor_seq=int(events[-1].seq or 0), updated_at=at)
            ).rowcount  # type: ignore[attr-defined]
            if moved != 1:  # another pass took these events first
                session.rollback()
                return True
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                return True
        if added and self.after_pass is not None:
            self.after_pass()
        return len(events) == self.batch


def replay_store_events(
    session: Session, endpoint: WebhookEndpointRow, since: datetime, *, had: set[str], now: datetime,
    limit: int,
) -> int:
    """Deliveries for the store events from ``since`` on that the endpoint never had (the ones it
    had are made due again by ``webhooks.replay``). Returns how many were added."""
    rows = session.execute(
        select(OutboundEventRow)
        .where(col(OutboundEventRow.occurred_at) >= since)
        .order_by(col(OutboundEventRow.seq))
        .limit(limit)
    ).scalars()
    added = 0
    for row in rows:
        event = OutboundEvent(
            seq=int(row.seq), id=row.id, type=row.type, subject_id=row.subject_id,
            payload=dict(row.payload), occurred_at=as_utc(row.occurred_at) or row.occurred_at,
        )
        if row.id in had or not wants(endpoint, event.type, _zone_of(event)):
            continue
        session.add(store_delivery(endpoint.id, event, now))
        added += 1
    return added


def purge_store_events(session: Session, *, before: datetime, chunk: int = CHUNK) -> int:
    """Delete the store-side events that occurred before ``before``, that every relay cursor has passed
    (all of them when there is no relay) and that no pending message still needs, ``chunk`` at a time,
    each chunk committed (as the zone-event log's purge: writers never wait long behind it); how many."""
    ev = OutboundEventRow.__table__.c  # type: ignore[attr-defined]
    passed = passed_by_every_cursor(ev.seq, OutboundCursor.__table__.c)  # type: ignore[attr-defined]
    total = 0
    while True:
        ids = (
            select(ev.id)
            .where(ev.occurred_at < before, passed, ev.id.not_in(pending_messages(STORE_STREAM)))
            .order_by(ev.seq)
            .limit(chunk)
        )
        n = int(session.execute(delete(OutboundEventRow).where(ev.id.in_(ids))).rowcount)  # type: ignore[attr-defined]
        session.commit()
        total += n
        if n < chunk:
            return total


def purge_store_events_job(runtime: Runtime) -> None:
    keep = timedelta(days=runtime.settings.webhooks.store_events_retention_days)
    with Session(runtime.engine) as session:
        n = purge_store_events(session, before=runtime.now() - keep)
    if n:
        log.info("purged %d store-side events past retention", n)
