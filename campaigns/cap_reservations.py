"""Cap reservations: the slots a winning delivery takes in each of its frequency-cap buckets.

A UNIQUE (customer, bucket, slot) constraint on the reservations, not a lock in Python, is what keeps
two concurrent events from both taking the last slot of a cap: the loser's insert fails and it decides
again. Kept apart from the handler because the slot arithmetic (lowest free slot, lazy release of
slots held by deliveries that will never be sent) is its own concern.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, select
from sqlmodel import Session

from campaigns.limits import CapBucket
from campaigns.storage.deliveries import CANCELLED, FAILED, SKIPPED, CapReservation, Delivery

NOT_COUNTING = (SKIPPED, CANCELLED, FAILED)


class CapTaken(Exception):
    """A reservation bucket is full (another delivery took the last slot first)."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.bucket = bucket


def _free_slots(session: Session, customer_id: str, bucket: CapBucket) -> list[int]:
    taken = set(
        session.execute(
            select(CapReservation.slot).where(
                CapReservation.customer_id == customer_id, CapReservation.bucket == bucket.key
            )
        ).scalars()
    )
    return [slot for slot in range(bucket.limit) if slot not in taken]


def _release_dead(session: Session, customer_id: str, bucket_key: str) -> None:
    dead = select(Delivery.id).where(Delivery.status.in_(NOT_COUNTING))  # type: ignore[attr-defined]
    session.execute(
        delete(CapReservation)
        .where(CapReservation.customer_id == customer_id, CapReservation.bucket == bucket_key)  # type: ignore[arg-type]
        .where(CapReservation.delivery_id.in_(dead))  # type: ignore[attr-defined]
    )


def reserve(
    session: Session, customer_id: str, buckets: Sequence[CapBucket], delivery_id: str, at: datetime
) -> None:
    """Take the lowest free slot of every bucket (raises ``CapTaken`` when one is full)."""
    for bucket in buckets:
        free = _free_slots(session, customer_id, bucket)
        if not free:
            # Slots held by deliveries that will never be sent (cancelled by an opt-out, skipped at send
            # time, failed) are given back lazily, here, when they are needed.
            _release_dead(session, customer_id, bucket.key)
            free = _free_slots(session, customer_id, bucket)
        if not free:
            raise CapTaken(bucket.key)
        session.add(
            CapReservation(
                customer_id=customer_id,
                bucket=bucket.key,
                slot=free[0],
                delivery_id=delivery_id,
                created_at=at,
            )
        )
    session.flush()
