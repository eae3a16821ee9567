"""A send between the provider call and its recorded result: the part of the outbox that keeps a
marketing message from reaching a person twice.

1. ``mark_in_flight`` commits ``send_started_at`` before the provider is called. A claim that finds
   it set on a row without a result (the dispatcher died mid-send, or the send timed out after the
   request left) knows the message may have gone.
2. The result is written with ``write_with_retry``: a connection lost after a successful send (the
   server restarted, ``pg_terminate_backend``) must not leave the row to be claimed and sent again.
3. ``settle`` decides such a row without sending it: the provider's own record (``lookup``, where
   the provider can list what it accepted) marks it sent (``reconciled``); otherwise it is dropped with
   the reason ``ambiguous_send``. Its cap slots are kept: it may have been sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import Session

from campaigns.providers.base import OutboundMessage, ProviderError, SendResult
from campaigns.storage.columns import as_utc
from campaigns.storage.deliveries import FAILED, SENDING, SENT, Delivery
from campaigns.store_events import message_status

log = logging.getLogger(__name__)

T = TypeVar("T")

OUTCOME_UNKNOWN = "outcome_unknown"  # a send without an answer, waiting to be settled
AMBIGUOUS_SEND = "ambiguous_send"  # dropped: it may or may not have reached the person
RECONCILED = "reconciled"  # the provider's list shows it accepted the send
AMBIGUOUS_REASONS = (OUTCOME_UNKNOWN, AMBIGUOUS_SEND, RECONCILED)
# Sleeps between attempts to write a result (about 4 s in all): a restarted or failed-over PostgreSQL
# is usually back well within that; beyond it the row is settled later like a crash.
WRITE_RETRY_DELAYS_S = (0.05, 0.2, 0.5, 1.0, 2.0)


def write_with_retry(
    engine: Engine, write: Callable[[Session], T], *, delays_s: tuple[float, ...] = WRITE_RETRY_DELAYS_S
) -> T:
    """Run ``write`` in a transaction of its own; on a lost connection, again in a new one.

    ``write`` must be safe to repeat: every outbox write is guarded by the claim's token and status, so
    a commit whose acknowledgement was lost matches nothing the second time.
    """
    for attempt, delay in enumerate((*delays_s, None)):
        try:
            with Session(engine, expire_on_commit=False) as session:
                out = write(session)
                session.commit()
                return out
        except (OperationalError, InterfaceError) as exc:
            if delay is None:
                raise
            log.warning("outbox write failed (%s), attempt %d; retrying", type(exc).__name__, attempt + 1)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _held(delivery: Delivery, token: str) -> Any:
    table = Delivery.__table__  # type: ignore[attr-defined]
    return (table.c.id == delivery.id) & (table.c.leased_by == token) & (table.c.status == SENDING)


def mark_in_flight(session: Session, delivery: Delivery, *, token: str, at: datetime) -> bool:
    """Stamp the claimed row as being sent; False when the claim no longer holds a live lease.

    Repeating it with the same ``at`` matches again (a retried write whose first commit went through).
    """
    table = Delivery.__table__  # type: ignore[attr-defined]
    stmt = (
        update(table)
        .where(_held(delivery, token), table.c.lease_until > at)
        .where(or_(table.c.send_started_at.is_(None), table.c.send_started_at == at))
        .values(send_started_at=at, updated_at=at)
    )
    return bool(session.connection().execute(stmt).rowcount)


def keep_unsettled(
    session: Session,
    delivery: Delivery,
    *,
    token: str,
    at: datetime,
    settle_at: datetime,
    error: ProviderError,
    provider_name: str | None,
) -> bool:
    """A send without an answer: the row stays ``sending``, leased until ``settle_at`` (when the request
    can no longer be in flight at the provider), to be settled by the next claim, never sent again."""
    stmt = update(Delivery.__table__).where(_held(delivery, token)).values(  # type: ignore[attr-defined]
        reason=OUTCOME_UNKNOWN, lease_until=settle_at, last_error=str(error)[:500],
        error_code=error.code or OUTCOME_UNKNOWN, provider=provider_name, updated_at=at,
    )
    return bool(session.connection().execute(stmt).rowcount)


def settle(
    engine: Engine,
    delivery: Delivery,
    msg: OutboundMessage | None,
    provider: Any,
    *,
    at: datetime,
    retry_at: datetime | None,
) -> tuple[str, str]:
    """Decide a row whose send may have gone; returns (status, reason).

    ``msg`` is None when the recipient's address is gone (erased): nothing to look up. ``retry_at`` is
    when to ask the provider again if its list cannot be read now (None: no more attempts).
    """
    token = delivery.leased_by or ""
    since = as_utc(delivery.send_started_at) or at
    lookup = getattr(provider, "lookup", None)
    found: SendResult | None = None
    if lookup is not None and msg is not None:
        try:
            found = lookup(msg, since)
        except ProviderError as exc:
            if retry_at is not None:
                values = {"lease_until": retry_at, "last_error": f"lookup: {exc}"[:500], "updated_at": at}
                write_with_retry(engine, lambda s: _update(s, delivery, token, values))
                return SENDING, "lookup_failed"
    if found is not None:
        status = found.status or SENT
        values = {
            "status": status, "reason": RECONCILED, "provider_message_id": found.provider_message_id,
            "sent_at": as_utc(found.accepted_at) or since, "lease_until": None, "last_error": None,
            "error_code": None, "updated_at": at,
        }
        write_with_retry(engine, lambda s: _update(s, delivery, token, values))
        return status, RECONCILED
    values = {
        "status": FAILED, "reason": AMBIGUOUS_SEND, "error_code": AMBIGUOUS_SEND, "lease_until": None,
        "updated_at": at,
    }
    write_with_retry(engine, lambda s: _update(s, delivery, token, values))
    log.warning("delivery %s dropped: its send may have reached the recipient", delivery.id)
    return FAILED, AMBIGUOUS_SEND


def _update(session: Session, delivery: Delivery, token: str, values: dict[str, Any]) -> bool:
    stmt = update(Delivery.__table__).where(_held(delivery, token)).values(**values)  # type: ignore[attr-defined]
    held = bool(session.connection().execute(stmt).rowcount)
    if held and "status" in values:
        status, reason, at = values["status"], values.get("reason"), values["updated_at"]
        message_status(session, delivery, status, reason=reason, at=at)
    return held
