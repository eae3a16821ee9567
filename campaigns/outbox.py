"""The durable outbox: enqueue, claim with a lease, re-check, send, record, retry, recipient hygiene.

A delivery row exists (with a unique idempotency key) before any provider is called. Dispatchers
claim due rows with a lease: ``FOR UPDATE SKIP LOCKED`` on PostgreSQL so two dispatchers never take
the same row, a single guarded ``UPDATE ... RETURNING`` on SQLite (one writer at a time). A claim
whose lease lapsed (the dispatcher died, no result recorded) is claimable again. Results are recorded
only by the lease holder (``leased_by`` is a per-claim token). A row whose send had started
(``send_started_at``) is never sent again: ``campaigns.in_flight`` settles it.

This is an adapter (it touches the database and calls providers); the decisions it makes on a
result (retry or not, backoff) are small pure functions at the top.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from campaigns.in_flight import keep_unsettled, mark_in_flight, settle, write_with_retry
from campaigns.model import CHANNEL_PURPOSE, LOCATION_PURPOSE
from campaigns.providers.base import (
    Channel,
    InvalidRecipient,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    SendResult,
)
from campaigns.render import distance_m
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import ConsentEvent, Customer, Device, Suppression
from campaigns.storage.deliveries import (
    DEFERRED,
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    CapReservation,
    Delivery,
)
from campaigns.storage.geofence_views import ZONE_EVENTS
from campaigns.store_events import consent_changed, message_status, opted_out

log = logging.getLogger(__name__)

BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
# Keys of ``Delivery.data`` that are for the dispatcher's re-check, not for the provider payload.
CONTEXT_PREFIX = "_"
PURPOSE_KEY = "_purpose"  # set on transactional deliveries: the consent purpose that gates them


# -- pure helpers ---------------------------------------------------------------------------------
def backoff(attempts: int, *, base: timedelta = BACKOFF_BASE, cap: timedelta = BACKOFF_CAP) -> timedelta:
    """Exponential backoff after the ``attempts``-th failed attempt: base, 2*base, 4*base ... <= cap."""
    return min(cap, base * (2 ** max(0, attempts - 1)))


def mask(value: str | None) -> str:
    """A recipient for logs: last 3 characters only."""
    if not value:
        return "-"
    return "…" + value[-3:]


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


# -- re-check at send time ------------------------------------------------------------------------
def consent_now(session: Session, customer_id: str, at: datetime) -> dict[str, bool]:
    """Latest ledger entry per purpose wins (the consent domain's projection when available)."""
    rows = (
        session.execute(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)).scalars().all()
    )
    try:
        from campaigns.consent import consent_state
    except ImportError:  # pragma: no cover - the consent module ships with the engine
        consent_state = None
    if consent_state is not None:
        return {str(k): v for k, v in consent_state(rows, at).items()}
    state: dict[str, tuple[datetime, bool]] = {}
    for row in rows:
        when = as_utc(row.occurred_at)
        assert when is not None
        if when <= at and (row.purpose not in state or state[row.purpose][0] <= when):
            state[row.purpose] = (when, row.granted)
    return {purpose: granted for purpose, (_, granted) in state.items()}


def is_suppressed(session: Session, phone_hash: str | None, channel: str = "sms") -> bool:
    if not phone_hash:
        return False
    return session.get(Suppression, (phone_hash, channel)) is not None


def still_near_zone(session: Session, delivery: Delivery, at: datetime) -> str | None:
    """For a deferred offer: is the customer still in the zone, or did they leave only just now and
    close by? Reads the device's latest zone event for that zone."""
    events = ZONE_EVENTS.c
    latest = session.execute(
        select(events.kind, events.at, events.lat, events.lng)
        .where(events.device_id == delivery.device_id, events.zone_id == delivery.zone_id)
        .order_by(events.at.desc(), events.seq.desc())
        .limit(1)
    ).first()
    if latest is None:
        return "presence_unknown"
    if latest.kind != "exit":
        return None
    data = delivery.data or {}
    near_exit_s = float(data.get("_near_exit_s", 900))
    exited_at = as_utc(latest.at)
    assert exited_at is not None
    if (at - exited_at).total_seconds() > near_exit_s:
        return "left_zone"
    near_m = float(data.get("_near_m", 500))
    zone_lat, zone_lng = data.get("_zone_lat"), data.get("_zone_lng")
    if latest.lat is not None and latest.lng is not None and zone_lat and zone_lng:
        if distance_m(latest.lat, latest.lng, float(zone_lat), float(zone_lng)) > near_m:
            return "left_zone"
    return None


@dataclass
class Prefetched:
    """What the re-check of a claimed batch needs, read with a few IN queries instead of per row."""

    customers: dict[str, Customer]
    consents: dict[str, dict[str, bool]]
    devices: dict[str, Device]
    suppressed: set[str]

    @classmethod
    def load(cls, session: Session, deliveries: Sequence[Delivery], at: datetime) -> Prefetched:
        from campaigns.consent import consent_state

        customer_ids = sorted({d.customer_id for d in deliveries if d.customer_id})
        device_ids = sorted({d.device_id for d in deliveries if d.device_id})
        customers = {
            c.id: c
            for c in session.execute(select(Customer).where(Customer.id.in_(customer_ids))).scalars()  # type: ignore[attr-defined]
        }
        ledgers: dict[str, list[ConsentEvent]] = {cid: [] for cid in customer_ids}
        for row in session.execute(
            select(ConsentEvent).where(ConsentEvent.customer_id.in_(customer_ids))  # type: ignore[union-attr]
        ).scalars():
            ledgers.setdefault(row.customer_id or "", []).append(row)
        consents = {
            cid: {str(k): v for k, v in consent_state(rows, at).items()} for cid, rows in ledgers.items()
        }
        devices = {
            d.id: d for d in session.execute(select(Device).where(Device.id.in_(device_ids))).scalars()
        }  # type: ignore[attr-defined]
        hashes = sorted({c.phone_hash for c in customers.values() if c.phone_hash})
        suppressed = set(
            session.execute(
                select(Suppression.phone_hash).where(
                    Suppression.phone_hash.in_(hashes), Suppression.channel == "sms"
                )  # type: ignore[attr-defined]
            ).scalars()
        )
        return cls(customers, consents, devices, suppressed)


def recheck(
    session: Session, delivery: Delivery, at: datetime, pre: Prefetched | None = None
) -> tuple[str | None, str | None]:
    """(reason to skip, recipient address) right before sending. Consent and suppression are re-read;
    a deferred offer also re-checks presence; an expired offer is not sent."""
    pre = pre or Prefetched.load(session, [delivery], at)
    expires_at = as_utc(delivery.expires_at)
    if expires_at is not None and at >= expires_at:
        return "expired", None
    customer = pre.customers.get(delivery.customer_id or "")
    if customer is None or customer.erased_at is not None:
        return "unknown_customer", None
    consents = pre.consents.get(customer.id, {})
    if delivery.zone_id and not consents.get(LOCATION_PURPOSE, False):
        return f"no_consent:{LOCATION_PURPOSE}", None
    # a transactional notice (an order is ready) answers to its own purpose, not to marketing consent
    transactional = (delivery.data or {}).get(PURPOSE_KEY)
    purpose = transactional or CHANNEL_PURPOSE.get(delivery.channel)
    if purpose is None or not consents.get(purpose, False):
        return f"no_consent:{purpose}", None
    address: str | None
    if delivery.channel == "sms":
        if customer.phone_hash and customer.phone_hash in pre.suppressed:
            return "suppressed", None
        address = customer.phone_e164
        if not address:
            return "no_phone", None
    else:
        device = pre.devices.get(delivery.device_id or "")
        if device is None or not device.push_token or not device.push_token_active:
            return "no_push_token", None
        address = device.push_token
    if (delivery.data or {}).get("_deferred") == "1":
        away = still_near_zone(session, delivery, at)
        if away:
            return away, None
    return None, address


def to_message(delivery: Delivery, address: str, platform: str | None = None) -> OutboundMessage:
    payload = {k: str(v) for k, v in (delivery.data or {}).items() if not str(k).startswith(CONTEXT_PREFIX)}
    return OutboundMessage(
        delivery_id=delivery.id,
        idempotency_key=delivery.idempotency_key,
        channel=Channel(delivery.channel),
        to=address,
        body=delivery.body or "",
        title=delivery.title,
        data=payload,
        expires_at=as_utc(delivery.expires_at),
        platform=platform,
        locale=delivery.locale,
    )


# -- record ---------------------------------------------------------------------------------------
_FINISH_STATEMENTS: dict[tuple[str, ...], Any] = {}


def _finish_statement(keys: tuple[str, ...]) -> Any:
    """One compiled-once UPDATE per set of columns (statement building dominated the per-message cost)."""
    stmt = _FINISH_STATEMENTS.get(keys)
    if stmt is None:
        table = Delivery.__table__
        c = table.c  # type: ignore[attr-defined]
        stmt = (
            table.update()  # type: ignore[attr-defined]
            .where(c.id == bindparam("w_id"), c.leased_by == bindparam("w_token"), c.status == SENDING)
            .values({key: bindparam(f"v_{key}") for key in keys})
        )
        _FINISH_STATEMENTS[keys] = stmt
    return stmt


def _finish(session: Session, delivery: Delivery, token: str, **values: Any) -> bool:
    """Update the row only if this claim still holds it (a lapsed lease may have been re-claimed)."""
    keys = tuple(sorted(values))
    params = {f"v_{k}": values[k] for k in keys} | {"w_id": delivery.id, "w_token": token}
    held = bool(session.connection().execute(_finish_statement(keys), params).rowcount)
    if held and "status" in values:  # message.* for the store side, written by this transaction's commit
        message_status(session, delivery, values["status"], reason=values.get("reason"),
                       at=values.get("updated_at") or values.get("sent_at") or delivery.due_at)
    return held


def release_caps(session: Session, delivery_id: str) -> None:
    """A delivery that will never be sent gives its cap slots back."""
    session.execute(delete(CapReservation).where(CapReservation.delivery_id == delivery_id))  # type: ignore[arg-type]


def withdraw_sms_consent(
    session: Session, customer_id: str, *, at: datetime, code: str | None, sender: str | None
) -> None:
    """Twilio 21610: the number replied STOP to that sender. Append a withdrawal to the ledger
    (source "provider") and cancel what is still waiting for SMS."""
    from campaigns.cancellation import cancel_waiting_deliveries

    top = session.execute(
        select(func.max(ConsentEvent.seq)).where(ConsentEvent.customer_id == customer_id)
    ).scalar()
    withdrawal = ConsentEvent(
        seq=int(top or 0) + 1,
        customer_id=customer_id,
        purpose=CHANNEL_PURPOSE["sms"],
        granted=False,
        occurred_at=at,
        recorded_at=at,
        source="provider",
        evidence={"code": code or "21610", "sender": sender},
    )
    session.add(withdrawal)
    cancelled = cancel_waiting_deliveries(
        session, customer_id=customer_id, channels=["sms"], reason="unsubscribed", at=at
    )
    consent_changed(session, customer_id=customer_id, purpose=CHANNEL_PURPOSE["sms"], granted=False,
                    source="provider", consent_id=withdrawal.id, cancelled=cancelled, at=at)  # fmt: skip
    opted_out(session, customer_id=customer_id, channels=["sms"], reason="provider", at=at)


def apply_hygiene(session: Session, delivery: Delivery, error: InvalidRecipient, at: datetime) -> None:
    if error.kind == "token_unregistered" and delivery.device_id:
        session.execute(
            update(Device)
            .where(Device.id == delivery.device_id)
            .values(push_token_active=False, updated_at=at)  # type: ignore[arg-type]
        )
    elif error.kind == "unsubscribed" and delivery.customer_id:
        withdraw_sms_consent(
            session, delivery.customer_id, at=at, code=error.code, sender=getattr(error, "sender", None)
        )


def record_result(
    session: Session,
    delivery: Delivery,
    *,
    token: str,
    at: datetime,
    result: SendResult | None = None,
    error: Exception | None = None,
    provider_name: str | None = None,
    max_attempts: int = 6,
    settle_after: timedelta = timedelta(seconds=60),
) -> str:
    """Write the outcome of one provider call; returns the new status.

    An ``OutcomeUnknown`` keeps the row ``sending`` until ``at + settle_after`` (see ``in_flight``).
    Safe to repeat: a row this claim no longer holds is left alone, hygiene included."""
    if result is not None:
        status = result.status or SENT
        _finish(
            session,
            delivery,
            token,
            status=status,
            provider=provider_name,
            provider_message_id=result.provider_message_id,
            sent_at=as_utc(result.accepted_at) or at,
            lease_until=None,
            updated_at=at,
            reason=delivery.reason,
            last_error=None,
            error_code=None,
        )
        return status
    assert error is not None
    if isinstance(error, OutcomeUnknown):
        keep_unsettled(session, delivery, token=token, at=at, settle_at=at + settle_after, error=error,
                       provider_name=provider_name)
        return SENDING
    message = str(error)[:500]
    code = getattr(error, "code", None)
    if isinstance(error, RetryableError) and delivery.attempts < max_attempts:
        wait = backoff(delivery.attempts)
        if error.retry_after_s:
            wait = max(wait, timedelta(seconds=error.retry_after_s))
        _finish(
            session,
            delivery,
            token,
            status=PENDING,
            due_at=at + wait,
            lease_until=None,
            send_started_at=None,  # the provider answered: it did not take this one
            last_error=message,
            error_code=code,
            provider=provider_name,
            updated_at=at,
        )
        return PENDING
    if isinstance(error, InvalidRecipient):
        reason = error.kind
    elif isinstance(error, RetryableError):
        reason = "max_attempts"
    elif isinstance(error, PermanentError):
        reason = "no_provider" if code == "no_provider" else "permanent_error"
    else:
        reason = f"unexpected:{type(error).__name__}"
    held = _finish(
        session,
        delivery,
        token,
        status=FAILED,
        reason=reason,
        lease_until=None,
        last_error=message,
        error_code=code or reason,
        provider=provider_name,
        updated_at=at,
    )
    if held:
        if isinstance(error, InvalidRecipient):
            apply_hygiene(session, delivery, error, at)
        release_caps(session, delivery.id)
    return FAILED


def skip_claimed(session: Session, delivery: Delivery, *, token: str, reason: str, at: datetime) -> None:
    _finish(session, delivery, token, status=SKIPPED, reason=reason, lease_until=None, updated_at=at)
    release_caps(session, delivery.id)


def postpone_claimed(
    session: Session, delivery: Delivery, *, token: str, until: datetime, at: datetime
) -> None:
    """Give a claimed row back without counting an attempt (e.g. the sender's throughput is used up)."""
    _finish(
        session,
        delivery,
        token,
        status=PENDING,
        due_at=until,
        lease_until=None,
        attempts=max(0, delivery.attempts - 1),
        updated_at=at,
    )


def _ours(session: Session, deliveries: Sequence[Delivery], at: datetime) -> set[str]:
    """Ids of the rows this claim still holds with a live lease (a slow dispatcher may have lost some)."""
    tokens = {d.leased_by for d in deliveries}
    rows = session.execute(
        select(Delivery.id, Delivery.leased_by, Delivery.lease_until)
        .where(Delivery.id.in_([d.id for d in deliveries]))  # type: ignore[attr-defined]
        .where(Delivery.status == SENDING)
    )
    return {r.id for r in rows if r.leased_by in tokens and (as_utc(r.lease_until) or at) > at}


def send_batch(
    engine: Engine,
    deliveries: Sequence[Delivery],
    *,
    providers: Mapping[str, Any],
    now: Callable[[], datetime],
    max_attempts: int,
    pace: Callable[[str, datetime], timedelta] | None = None,
) -> list[Outcome]:
    """Re-check a claimed batch in one read, then call the provider for each row outside any
    transaction and record each result at once (a crash loses at most the rows in flight, which the
    lease hands to another dispatcher). ``now`` is the adapter's clock."""
    at = now()
    outcomes: dict[str, Outcome] = {}
    ready: list[tuple[Delivery, str, str | None, Any]] = []
    unsettled: list[tuple[Delivery, OutboundMessage | None, Any]] = []
    with Session(engine, expire_on_commit=False) as session:
        ours = _ours(session, deliveries, at)
        pre = Prefetched.load(session, [d for d in deliveries if d.id in ours], at)
        for delivery in deliveries:
            token = delivery.leased_by or ""
            if delivery.id not in ours:
                # A slow dispatcher whose lease lapsed: another one may hold the row now. Never send twice.
                outcomes[delivery.id] = Outcome(delivery.id, "lease_lost", "lease_lost")
                continue
            if delivery.send_started_at is not None:
                # An earlier claim called the provider and recorded nothing: it may have been sent.
                address = _address(pre, delivery)
                msg = to_message(delivery, address) if address else None
                unsettled.append((delivery, msg, providers.get(delivery.channel)))
                continue
            if delivery.attempts > max_attempts:
                _finish(
                    session,
                    delivery,
                    token,
                    status=FAILED,
                    reason="max_attempts",
                    lease_until=None,
                    updated_at=at,
                )
                release_caps(session, delivery.id)
                outcomes[delivery.id] = Outcome(delivery.id, FAILED, "max_attempts")
                continue
            reason, address = recheck(session, delivery, at, pre)
            if reason is not None or address is None:
                skip_claimed(session, delivery, token=token, reason=reason or "no_address", at=at)
                outcomes[delivery.id] = Outcome(delivery.id, SKIPPED, reason)
                continue
            provider = providers.get(delivery.channel)
            wait = pace(f"{delivery.channel}:{getattr(provider, 'name', '-')}", at) if pace else timedelta(0)
            if wait > timedelta(0):
                postpone_claimed(session, delivery, token=token, until=at + wait, at=at)
                outcomes[delivery.id] = Outcome(delivery.id, PENDING, "throughput")
                continue
            device = pre.devices.get(delivery.device_id or "")
            platform = device.platform if device is not None and delivery.channel == "push" else None
            ready.append((delivery, address, platform, provider))
        session.commit()  # skips and postponements; never hold a transaction across a network call
    for delivery, msg, provider in unsettled:
        retry_at = at + backoff(delivery.attempts) if delivery.attempts < max_attempts else None
        status, reason = settle(engine, delivery, msg, provider, at=now(), retry_at=retry_at)
        outcomes[delivery.id] = Outcome(delivery.id, status, reason)
    for delivery, address, platform, provider in ready:
        if not lease_lasts(delivery, provider, now()):
            outcomes[delivery.id] = _give_back(engine, delivery, now())
            continue
        outcomes[delivery.id] = _send_one(
            engine, delivery, address, platform, provider, now=now, max_attempts=max_attempts
        )
    return [outcomes[d.id] for d in deliveries]


def _address(pre: Prefetched, delivery: Delivery) -> str | None:
    """Where the message went (to look it up), whatever the consent says now."""
    if delivery.channel == "sms":
        customer = pre.customers.get(delivery.customer_id or "")
        return customer.phone_e164 if customer is not None and customer.erased_at is None else None
    device = pre.devices.get(delivery.device_id or "")
    return device.push_token if device is not None else None


def lease_lasts(delivery: Delivery, provider: Any, at: datetime) -> bool:
    """True while the claim's lease outlasts the longest send of the provider (``send_budget_s``).

    A batch is sent row after row: when the provider is slow, the last rows of a claim would otherwise
    be sent after their lease lapsed, while another dispatcher may have claimed and sent them too."""
    lease_until = as_utc(delivery.lease_until)
    budget = timedelta(seconds=float(getattr(provider, "send_budget_s", 0.0) or 0.0))
    return lease_until is None or at + budget < lease_until


def _give_back(engine: Engine, delivery: Delivery, at: datetime) -> Outcome:
    """A row whose lease is too short to send: pending again, as due as it was, for the next claim (the
    attempt is not counted)."""
    with Session(engine, expire_on_commit=False) as session:
        _finish(session, delivery, delivery.leased_by or "", status=PENDING, lease_until=None,
                attempts=max(0, delivery.attempts - 1), updated_at=at)
        session.commit()
    return Outcome(delivery.id, PENDING, "lease_short")


def _send_one(
    engine: Engine,
    delivery: Delivery,
    address: str,
    platform: str | None,
    provider: Any,
    *,
    now: Callable[[], datetime],
    max_attempts: int,
) -> Outcome:
    result: SendResult | None = None
    error: Exception | None = None
    token = delivery.leased_by or ""
    if provider is None:
        # No configured provider serves this channel: fail it with a reason, never print it somewhere.
        error = PermanentError(f"no provider registered for channel {delivery.channel!r}", code="no_provider")
    else:
        started_at = now()
        if not write_with_retry(engine, lambda s: mark_in_flight(s, delivery, token=token, at=started_at)):
            return Outcome(delivery.id, "lease_lost", "lease_lost")
        delivery.send_started_at = started_at
        try:
            result = provider.send(to_message(delivery, address, platform))
        except Exception as exc:  # the taxonomy decides; anything else is recorded, not raised
            error = exc
    done_at = now()
    # The request had no answer: settle it once it can no longer be in flight at the provider.
    settle_after = timedelta(seconds=2 * float(getattr(provider, "send_budget_s", 0.0) or 30.0))
    status = write_with_retry(
        engine,
        lambda session: record_result(
            session,
            delivery,
            token=token,
            at=done_at,
            result=result,
            error=error,
            provider_name=getattr(provider, "name", None),
            max_attempts=max_attempts,
            settle_after=settle_after,
        ),
    )
    due = as_utc(delivery.due_at)
    lag = (done_at - due).total_seconds() if due is not None else None
    if error is not None:
        log.info("delivery %s %s: %s (to %s)", delivery.id, status, type(error).__name__, mask(address))
    return Outcome(delivery.id, status, None if error is None else type(error).__name__, lag)


def send_claimed(
    engine: Engine,
    delivery: Delivery,
    *,
    providers: Mapping[str, Any],
    now: Callable[[], datetime],
    max_attempts: int,
    pace: Callable[[str, datetime], timedelta] | None = None,
) -> Outcome:
    """``send_batch`` for one claimed row."""
    return send_batch(engine, [delivery], providers=providers, now=now, max_attempts=max_attempts, pace=pace)[
        0
    ]


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
