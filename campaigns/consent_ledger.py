"""Use cases of the consent ledger: read it, append a grant or withdrawal, and the ingest's consent filter.

The ledger is append-only; the current state is its projection (``campaigns.consent``, pure). A
withdrawal cancels the waiting deliveries it concerns in the caller's transaction. Kept apart from
the customer and device writes because consent is its own record, with its own rules (plausible
dates, no SMS grant to a suppressed number) and its own hot path (``location_consented_devices`` on
every ingest batch).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, any_, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col, select

from campaigns.cancellation import cancel_waiting_deliveries
from campaigns.consent import WITHDRAWAL_CHANNELS, Purpose, Source, consent_state, is_granted
from campaigns.customer_input import CustomerError, Suppressed, valid_attributes, valid_text
from campaigns.customer_lookup import get_customer
from campaigns.storage.customers import ConsentEvent, Device
from campaigns.store_events import consent_changed
from campaigns.suppression_list import SUPPRESSED_BY_ERASURE, suppression_of

MAX_FUTURE_SKEW = timedelta(minutes=5)  # a phone's clock may run a little ahead
EARLIEST_CONSENT = datetime(2000, 1, 1, tzinfo=UTC)  # older dates are typos (and overflow some drivers)


def ledger(session: Session, customer_id: str) -> list[ConsentEvent]:
    """The customer's ledger, oldest first."""
    rows = session.exec(
        select(ConsentEvent)
        .where(ConsentEvent.customer_id == customer_id)
        .order_by(col(ConsentEvent.occurred_at), col(ConsentEvent.recorded_at), col(ConsentEvent.seq))
    ).all()
    return list(rows)


def current_consent(session: Session, customer_id: str, *, at: datetime) -> dict[Purpose, bool]:
    """State of every purpose now; ``sms_marketing`` is False while the number is suppressed."""
    customer = get_customer(session, customer_id, allow_erased=True)
    state = consent_state(ledger(session, customer_id), at)
    if state[Purpose.SMS_MARKETING] and suppression_of(session, customer.phone_hash) is not None:
        state[Purpose.SMS_MARKETING] = False
    return state


def _next_seq(session: Session, customer_id: str) -> int:
    top = session.exec(
        select(func.max(ConsentEvent.seq)).where(ConsentEvent.customer_id == customer_id)
    ).one()
    return int(top or 0) + 1


def record_consent(
    session: Session,
    *,
    customer_id: str,
    purpose: Purpose | str,
    granted: bool,
    source: Source | str,
    at: datetime,
    occurred_at: datetime | None = None,
    wording: str | None = None,
    wording_version: str | None = None,
    recorded_by: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    seq: int | None = None,
) -> tuple[ConsentEvent, int]:
    """Append a grant or withdrawal; a withdrawal cancels the waiting deliveries it concerns.

    Returns the ledger row and the number of deliveries cancelled (same transaction as the row).
    Raises ``Suppressed`` for an SMS grant to a suppressed number (only START by SMS lifts a STOP).
    ``seq`` lets a caller that already read the ledger skip the next-sequence query.
    """
    try:
        purpose, source = Purpose(purpose), Source(source)
    except ValueError as exc:
        raise CustomerError(str(exc)) from exc
    occurred_at = occurred_at or at
    if occurred_at.tzinfo is None:
        raise CustomerError("occurred_at needs a time zone offset")
    if occurred_at > at + MAX_FUTURE_SKEW:
        raise CustomerError("occurred_at is in the future")
    if occurred_at < EARLIEST_CONSENT:
        raise CustomerError("occurred_at is implausibly old")
    customer = get_customer(session, customer_id)
    if granted and purpose is Purpose.SMS_MARKETING and source is not Source.SMS_KEYWORD:
        row = suppression_of(session, customer.phone_hash)
        if row is not None:
            raise Suppressed(
                "this number was erased: SMS marketing cannot be re-enabled"
                if row.reason == SUPPRESSED_BY_ERASURE
                else "this number opted out by SMS: the customer must text START to resume"
            )
    event = ConsentEvent(
        seq=seq if seq is not None else _next_seq(session, customer_id),
        customer_id=customer_id,
        purpose=purpose.value,
        granted=granted,
        occurred_at=occurred_at,
        recorded_at=at,
        source=source.value,
        wording=valid_text(wording, "wording", 2000),
        wording_version=valid_text(wording_version, "wording_version", 64),
        recorded_by=valid_text(recorded_by, "recorded_by", 128),
        evidence=valid_attributes(evidence or {}),
    )
    session.add(event)
    session.flush()
    cancelled = 0
    if not granted:
        cancelled = cancel_waiting_deliveries(
            session,
            customer_id=customer_id,
            channels=WITHDRAWAL_CHANNELS[purpose],
            reason=f"consent_withdrawn:{purpose.value}",
            at=at,
            marketing_only=True,
        )
    if not granted and purpose is Purpose.STORE_WELCOME:
        from campaigns.arrivals import withdraw_arrivals  # (arrivals reads the ledger this writes)

        withdraw_arrivals(session, customer_id)
    consent_changed(session, customer_id=customer_id, purpose=purpose.value, granted=granted,
                    source=source.value, consent_id=event.id, cancelled=cancelled, at=at)  # fmt: skip
    return event, cancelled


def _member_of(column: Any, values: set[str], session: Session) -> Any:
    """``column IN values``; on PostgreSQL one array parameter (``= ANY(:ids)``) instead of one bind
    per value, which costs more to build and plan than the query itself for 1,000 device ids."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return column == any_(bindparam("member_ids", list(values), type_=ARRAY(String)))
    return column.in_(values)


def location_consented_devices(session: Session, device_ids: Iterable[str], *, at: datetime) -> set[str]:
    """The devices among ``device_ids`` whose customer holds ``location_offers`` or ``store_welcome``
    now: the two purposes for which a position is processed (offers near a zone; the store told of an
    arrival). Campaigns still require ``location_offers`` for every location-triggered message.

    On the ingest hot path: one query returning plain rows (no ORM objects), projected in Python.
    """
    ids = set(device_ids)
    if not ids:
        return set()
    rows = session.execute(
        select(
            col(Device.id).label("device_id"),
            col(ConsentEvent.purpose),
            col(ConsentEvent.granted),
            col(ConsentEvent.occurred_at),
            col(ConsentEvent.recorded_at),
            col(ConsentEvent.seq),
        )
        .join(ConsentEvent, col(ConsentEvent.customer_id) == col(Device.customer_id))
        .where(_member_of(col(Device.id), ids, session))
        # No join on customers: erasure deletes the devices and appends withdrawals to the ledger.
        # No SQL filter on purpose: with one, planners drive the join from the (unselective) purpose
        # index and read the whole ledger; consent_state ignores the other purposes anyway.
    ).all()
    ledgers: dict[str, list[Any]] = {}
    for row in rows:
        ledgers.setdefault(row.device_id, []).append(row)
    return {
        d for d, entries in ledgers.items()
        if is_granted(entries, Purpose.LOCATION_OFFERS, at) or is_granted(entries, Purpose.STORE_WELCOME, at)
    }
