"""How long the webhook delivery log keeps a message: ``webhooks.delivery_retention_days`` (30; 0 keeps
every message) after it was settled, then the worker's ``webhooks.purge_deliveries`` job deletes it.

Why a limit: one row per (endpoint, event), each with its whole JSON body, is written for every event a
receiver wants, so the table grows with the traffic, for ever. A message is deleted only once nothing
will send it again on its own: ``delivered``, ``parked`` (given up after ``webhooks.MAX_AGE``) or
``cancelled`` (its store event withdrawn). A ``pending`` one — never tried, or failing and waiting for its
next attempt — is never deleted, however old: it still has to reach its receiver, in order.

When a message was settled: ``delivered_at`` for a delivered one; the due time of its last attempt
(``next_attempt_at``) for a parked or cancelled one, which records no settling time — at most the wait
behind a blocked head of its queue (``MAX_AGE``) earlier than the attempt that settled it.

A replay from before the retention still sends the events the logs kept, but as new messages (a new
``webhook-id``): the purged message's id is gone with it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, delete, select
from sqlmodel import Session

from geofence.service.tables.webhooks import WebhookDeliveryRow

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)
PURGE_EVERY_S = 6 * 3600.0
CHUNK = 5_000  # messages deleted per transaction: the sender and the enqueuers never wait long behind it
GIVEN_UP = ("parked", "cancelled")  # settled without being delivered
_D = WebhookDeliveryRow.__table__.c  # type: ignore[attr-defined]


def settled_before(before: datetime) -> list[ColumnElement[bool]]:
    """One condition per way a message ends: delivered before ``before`` (a range of the index on
    (status, delivered_at)); given up on, its last attempt due before ``before`` (few rows: the same
    index's status prefix finds them)."""
    return [
        and_(_D.status == "delivered", _D.delivered_at < before),
        and_(_D.status.in_(GIVEN_UP), _D.next_attempt_at < before),
    ]


def purge_webhook_deliveries(session: Session, *, before: datetime, chunk: int = CHUNK) -> int:
    """Delete the messages settled before ``before``, ``chunk`` at a time, each chunk committed; how many.

    A chunk's ids are read first, then deleted by primary key in a transaction of its own (a DELETE
    driven by a subquery let PostgreSQL scan the whole table for every chunk of a large backlog; a read
    transaction turned writer fails on SQLite when another process wrote in between). The DELETE repeats
    the condition: a message a replay made pending again since the read is kept."""
    total = 0
    for settled in settled_before(before):
        while True:
            ids = list(session.execute(select(_D.id).where(settled).limit(chunk)).scalars())
            session.rollback()  # end the read: the delete starts a write transaction of its own
            if not ids:
                break
            result = session.execute(delete(WebhookDeliveryRow).where(_D.id.in_(ids), settled))
            session.commit()
            total += int(result.rowcount)  # type: ignore[attr-defined]
            if len(ids) < chunk:
                break
    return total


def purge_webhook_deliveries_job(runtime: Runtime) -> int:
    days = runtime.settings.webhooks.delivery_retention_days
    if days <= 0:
        return 0
    with Session(runtime.engine) as session:
        n = purge_webhook_deliveries(session, before=runtime.now() - timedelta(days=days))
    if n:
        log.info("purged %d webhook messages past retention", n)
    return n
