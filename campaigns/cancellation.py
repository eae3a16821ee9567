"""Cancel what is waiting to go to a customer: the step that makes an opt-out effective at once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session

from campaigns.storage.deliveries import CANCELLED, WAITING_STATUSES, Delivery
from campaigns.store_events import MESSAGE_FIELDS, message_status
from campaigns.transactional import KEY_PREFIX


def cancel_waiting_deliveries(
    session: Session, *, customer_id: str, channels: Iterable[str], reason: str, at: datetime,
    marketing_only: bool = False,
) -> int:
    """Mark pending and deferred deliveries cancelled, in the caller's transaction.

    ``marketing_only``: leave transactional notices (an order is ready) alone — a
    withdrawn marketing consent does not stop them.

    Rows already leased to a dispatcher (``sending``) are not touched here: the dispatcher re-reads
    consent right before it calls the provider, inside its own transaction.
    """
    channels = list(channels)
    if not channels:
        return 0
    table = Delivery.__table__.c  # type: ignore[attr-defined]
    stmt = update(Delivery)
    if marketing_only:
        stmt = stmt.where(Delivery.idempotency_key.not_like(f"{KEY_PREFIX}%"))  # type: ignore[attr-defined]
    cancelled = session.execute(
        stmt
        .where(Delivery.customer_id == customer_id)  # type: ignore[arg-type]
        .where(Delivery.channel.in_(channels))  # type: ignore[attr-defined]
        .where(Delivery.status.in_(WAITING_STATUSES))  # type: ignore[attr-defined]
        .values(status=CANCELLED, reason=reason, updated_at=at)
        .returning(*(table[k] for k in ("id", *MESSAGE_FIELDS)))
    ).mappings().all()
    for row in cancelled:  # each is a message.skipped for the store side
        message_status(session, row, CANCELLED, reason=reason, at=at)
    return len(cancelled)
