"""The SMS suppression list: numbers (by keyed hash) that must not receive SMS marketing.

A STOP reply adds a ``sms_keyword`` suppression that START lifts; an erasure adds an ``erased`` one
that nothing lifts and that keeps no masked number. Kept apart from the consent ledger because it is
keyed by the number, not the customer: it outlives an erased customer and is matched on the hash.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from campaigns.storage.customers import Suppression

SUPPRESSED_BY_KEYWORD = "sms_keyword"
SUPPRESSED_BY_ERASURE = "erased"


def suppression_of(session: Session, hashed_phone: str | None, channel: str = "sms") -> Suppression | None:
    if hashed_phone is None:
        return None
    return session.get(Suppression, (hashed_phone, channel))


def suppress(
    session: Session, hashed_phone: str, *, reason: str, at: datetime, channel: str = "sms",
    masked: str | None = None,
) -> None:
    """Add the number to the suppression list; an erasure suppression is never downgraded, and keeps no
    masked number."""
    row = suppression_of(session, hashed_phone, channel)
    if reason == SUPPRESSED_BY_ERASURE:
        masked = None
    if row is None:
        session.add(Suppression(phone_hash=hashed_phone, channel=channel, reason=reason, created_at=at,
                                phone_masked=masked))
    elif reason == SUPPRESSED_BY_ERASURE and row.reason != SUPPRESSED_BY_ERASURE:
        row.reason, row.created_at, row.phone_masked = reason, at, None
        session.add(row)
    session.flush()


def lift_keyword_suppression(session: Session, hashed_phone: str, channel: str = "sms") -> bool:
    """Remove a STOP suppression (after START). Erasure suppressions stay. True if one was lifted."""
    row = suppression_of(session, hashed_phone, channel)
    if row is None or row.reason != SUPPRESSED_BY_KEYWORD:
        return False
    session.delete(row)
    session.flush()
    return True
