"""The outbox's record of a provider call: status, retry with backoff, recipient hygiene, cap release.

Every write goes through ``finish_claimed``, which updates a row only while this claim's token still
holds it (a lapsed lease may have been re-claimed by another dispatcher), so recording is safe to
repeat. Kept apart from the send loop because this is where a result becomes a status: the retry
decision, the hygiene a provider's answer triggers (a dead push token, an SMS number that replied
STOP) and the cap slots a never-sent delivery gives back.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlmodel import Session

from campaigns.in_flight import keep_unsettled
from campaigns.model import CHANNEL_PURPOSE
from campaigns.outbox import backoff
from campaigns.providers.base import (
    InvalidRecipient,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
    SendResult,
)
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import ConsentEvent, Device
from campaigns.storage.deliveries import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    CapReservation,
    Delivery,
)
from campaigns.store_events import consent_changed, message_status, opted_out

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


def finish_claimed(session: Session, delivery: Delivery, token: str, **values: Any) -> bool:
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
        finish_claimed(
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
        finish_claimed(
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
    held = finish_claimed(
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
    finish_claimed(session, delivery, token, status=SKIPPED, reason=reason, lease_until=None, updated_at=at)
    release_caps(session, delivery.id)


def postpone_claimed(
    session: Session, delivery: Delivery, *, token: str, until: datetime, at: datetime
) -> None:
    """Give a claimed row back without counting an attempt (e.g. the sender's throughput is used up)."""
    finish_claimed(
        session,
        delivery,
        token,
        status=PENDING,
        due_at=until,
        lease_until=None,
        attempts=max(0, delivery.attempts - 1),
        updated_at=at,
    )
