"""The durable outbox: enqueue, claim with a lease, re-check, send, record, retry, recipient hygiene.

A delivery row exists (with a unique idempotency key) before any provider is called. Dispatchers
claim due rows with a lease: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so two dispatchers never take
the same row, a single guarded ``UPDATE ... RETURNING`` on SQLite (one writer at a time). A claim
whose lease lapsed (the dispatcher died, no result recorded) is claimable again. Results are recorded
only by the lease holder (``leased_by`` is a per-claim token). A row whose send had started
(``send_started_at``) is never sent again: ``campaigns.in_flight`` settles it.

This is an adapter (it touches the database and calls providers); the decisions it makes on a
result (retry or not, backoff) are small pure functions at the top. This module holds the row's
way in (enqueue, claim, counts); the rest of the path lives beside it: ``campaigns.outbox_recheck``
(consent and address re-read at send time), ``campaigns.outbox_sending`` (the send loop) and
``campaigns.outbox_results`` (recording a provider's answer).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from campaigns.storage.deliveries import DEFERRED, PENDING, SENDING, Delivery

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Keys of ``Delivery.data`` that are for the dispatcher's re-check, not for the provider payload.
CONTEXT_PREFIX = "_"
PURPOSE_KEY = "_purpose"  # set on transactional deliveries: the consent purpose that gates them


# -- pure helpers ---------------------------------------------------------------------------------
def backoff(attempts: int, *, base: timedelta = BACKOFF_BASE, cap: timedelta = BACKOFF_CAP) -> timedelta:
    """Exponential backoff after the ``attempts``-th failed attempt: base, 2*base, 4*base ... <= cap."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Outcome:
    delivery_id: str
    status: str
    reason: str | None = None
    lag_s: float | None = None


# -- enqueue --------------------------------------------------------------------------------------
def enqueue(session: Session, delivery: Delivery) -> bool:
    """Insert a delivery unless its idempotency key exists; False when it was a duplicate.

    Runs in a SAVEPOINT so a duplicate does not abort the caller's transaction.
    """
    exists = session.execute(
        select(Delivery.id).where(Delivery.idempotency_key == delivery.idempotency_key)
    ).first()
    if exists is not None:
        return False
    try:
        with session.begin_nested():
            session.add(delivery)
    except IntegrityError:
        return False
    return True


# -- claim ----------------------------------------------------------------------------------------
def _claimable(at: datetime) -> Any:
    return or_(
        and_(Delivery.status.in_((PENDING, DEFERRED)), Delivery.due_at <= at),  # type: ignore[attr-defined]
        and_(Delivery.status == SENDING, Delivery.lease_until < at),  # type: ignore[operator]
    )


def claim_due(engine: Engine, *, at: datetime, lease: timedelta, limit: int, worker: str) -> list[Delivery]:
    """Lease up to ``limit`` due rows (oldest due first) to a fresh claim token and return them.

    Each claim counts as an attempt, so a row whose dispatcher keeps dying ends ``failed`` after
    ``max_attempts`` instead of looping.
    """
    token = f"{worker}:{uuid.uuid4().hex[:12]}"
    values = {
        "status": SENDING,
        "lease_until": at + lease,
        "leased_by": token,
        "attempts": Delivery.attempts + 1,
        "updated_at": at,
    }
    with Session(engine, expire_on_commit=False) as session:
        if engine.dialect.name == "postgresql":
            due = (
                select(Delivery.id)
                .where(_claimable(at))
                .order_by(Delivery.due_at)  # type: ignore[arg-type]
                .limit(limit)
                .with_for_update(skip_locked=True)
                .cte("due")
            )
            stmt = update(Delivery).where(Delivery.id == due.c.id).values(**values)
        else:
            due_ids = (
                select(Delivery.id).where(_claimable(at)).order_by(Delivery.due_at).limit(limit)  # type: ignore[arg-type]
            )
            stmt = (
                update(Delivery)
                .where(Delivery.id.in_(due_ids.scalar_subquery()))  # type: ignore[attr-defined]
                .where(_claimable(at))
                .values(**values)
            )
        ids = [row[0] for row in session.execute(stmt.returning(Delivery.id))]
        session.commit()
        if not ids:
            return []
        rows = (
            session.execute(
                select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.due_at)  # type: ignore[attr-defined]
            )
            .scalars()
            .all()
        )
        return list(rows)


def waiting_count(session: Session) -> int:
    return int(
        session.execute(
            select(func.count()).select_from(Delivery).where(Delivery.status.in_((PENDING, DEFERRED)))  # type: ignore[attr-defined]
        ).scalar()
        or 0
    )


def deliveries_by_status(session: Session, ids: Sequence[str]) -> dict[str, str]:
    rows = session.execute(select(Delivery.id, Delivery.status).where(Delivery.id.in_(list(ids))))  # type: ignore[attr-defined]
    return {r[0]: r[1] for r in rows}
