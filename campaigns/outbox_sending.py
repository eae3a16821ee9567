"""The outbox's send loop: a claimed batch is re-checked, sent row by row, and each result recorded.

No transaction is held across a network call: the re-check and its skips are committed first, then
each provider call is marked in flight, made, and recorded in its own short transaction (a crash
loses at most the rows in flight, which the lease hands to another dispatcher). Kept apart from the
claim (``campaigns.outbox``), the re-check (``campaigns.outbox_recheck``) and the recording
(``campaigns.outbox_results``) because this is the only part that calls providers and the clock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.in_flight import mark_in_flight, settle, write_with_retry
from campaigns.outbox import Outcome, backoff
from campaigns.outbox_recheck import Prefetched, recheck, to_message
from campaigns.outbox_results import (
    finish_claimed,
    postpone_claimed,
    record_result,
    release_caps,
    skip_claimed,
)
from campaigns.providers.base import OutboundMessage, PermanentError, SendResult
from campaigns.providers.errors import mask
from campaigns.storage.columns import as_utc
from campaigns.storage.deliveries import FAILED, PENDING, SENDING, SKIPPED, Delivery

log = logging.getLogger(__name__)


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
                finish_claimed(
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
        finish_claimed(session, delivery, delivery.leased_by or "", status=PENDING, lease_until=None,
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
