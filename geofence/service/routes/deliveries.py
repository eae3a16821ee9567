"""Routes: deliveries — Twilio's status callback (signed by Twilio) and the admin list.

Threading: the callback is ``async`` only to await the form/signature check; its database work runs in
the thread pool (``run_in_threadpool``), so the event loop never waits on the database. The admin
list is a plain sync route (FastAPI runs it in the pool). Provider SDK calls never happen here: the
dispatcher makes them from scheduler threads.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from campaigns.providers.errors import scrub
from campaigns.providers.twilio_status import STATUS_CALLBACK_PATH, next_status
from campaigns.store_events import STATUS_EVENTS, message_status
from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep
from geofence.service.metrics import DELIVERIES
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import require_scope
from geofence.service.tables._types import as_utc
from geofence.service.tables.campaigns import DELIVERED, FAILED, SENDING, SENT, UNDELIVERED, Delivery
from geofence.service.twilio_auth import verified_form

router = APIRouter(tags=["deliveries"])

_CAS_ATTEMPTS = 5


def apply_twilio_status(engine: Engine, form: dict[str, str], *, delivery_hint: str | None,
                        at: datetime) -> str:
    """Apply one status callback; returns the new status or why it was ignored.

    The row is found by ``MessageSid``; failing that, by the ``delivery`` id our status-callback URL
    carries (the callback can beat the dispatcher's own write of the SID). The update is a
    compare-and-set on the status read, so two callbacks racing (``sent`` and ``delivered``) cannot
    move a row backwards.
    """
    sid = form.get("MessageSid") or form.get("SmsSid")
    reported = form.get("MessageStatus") or form.get("SmsStatus")
    if not sid or not reported:
        raise HTTPException(400, "a status callback needs MessageSid and MessageStatus")
    for _ in range(_CAS_ATTEMPTS):
        with Session(engine, expire_on_commit=False) as session:
            row = _find(session, sid, delivery_hint)
            if row is None:
                return "ignored: unknown message"
            new = next_status(row.status, reported)
            if new is None:
                return f"ignored: {reported} does not advance {row.status}"
            values: dict[str, object] = {
                "status": new, "provider_message_id": sid, "updated_at": at, "lease_until": None,
            }
            if row.provider is None:
                values["provider"] = "twilio"
            if new == DELIVERED:
                values["delivered_at"] = at
            if new in (SENT, DELIVERED) and row.sent_at is None:
                values["sent_at"] = at
            error_code = form.get("ErrorCode")
            if new in (UNDELIVERED, FAILED) and error_code:
                values["error_code"] = error_code
                values["last_error"] = scrub(form.get("ErrorMessage") or f"Twilio error {error_code}")[:500]
            result = session.execute(
                update(Delivery)
                .where(col(Delivery.id) == row.id, col(Delivery.status) == row.status)
                .values(**values)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                if STATUS_EVENTS.get(new) != STATUS_EVENTS.get(row.status):  # queued -> sent: no news
                    why = error_code if new in (UNDELIVERED, FAILED) else None
                    message_status(session, row, new, reason=why, at=at)
                session.commit()
                DELIVERIES.labels(status=new, channel=row.channel).inc()
                return new
            session.rollback()  # another callback won the race: read again
    return "ignored: concurrent updates"


def _find(session: Session, sid: str, delivery_hint: str | None) -> Delivery | None:
    row = session.exec(select(Delivery).where(col(Delivery.provider_message_id) == sid)).first()
    if row is None and delivery_hint:
        row = session.get(Delivery, delivery_hint)
        if row is not None and (row.channel != "sms" or row.provider_message_id not in (None, sid)):
            return None  # the hint names another message: trust only the SID
    return row


@router.post(STATUS_CALLBACK_PATH, summary="Twilio message status callback (signed by Twilio)")
async def twilio_status_callback(request: Request, runtime: RuntimeDep) -> dict[str, str]:
    """Twilio posts queued / sent / delivered / undelivered / failed (+ ErrorCode) for each SMS.

    Unknown messages are acknowledged and ignored (200), so Twilio does not keep retrying them.
    """
    form = await verified_form(request, runtime.settings)
    hint = request.query_params.get("delivery")
    outcome = await run_in_threadpool(
        apply_twilio_status, runtime.engine, form, delivery_hint=hint, at=clock.now()
    )
    return {"result": outcome}


# --- admin list ---------------------------------------------------------------------------------


class DeliveryPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    idempotency_key: str
    campaign_id: str | None
    customer_id: str | None
    device_id: str | None
    zone_id: str | None
    channel: str
    provider: str | None
    status: str
    reason: str | None
    locale: str | None
    title: str | None
    body: str | None
    attempts: int
    # The dispatcher ("host:pid:thread") holding the row while it is being sent, and until when.
    lease_holder: str | None
    lease_until: datetime | None
    # Set when the provider was called: with the reason outcome_unknown / reconciled / ambiguous_send the
    # send had no answer and was (or will be) settled without sending again.
    send_started_at: datetime | None
    provider_message_id: str | None
    error_code: str | None
    last_error: str | None
    due_at: datetime
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None


def _public(row: Delivery) -> DeliveryPublic:
    sending = row.status == SENDING
    item = DeliveryPublic.model_validate(
        row.model_dump() | {
            "lease_holder": (row.leased_by or "").rsplit(":", 1)[0] or None if sending else None,
            "lease_until": row.lease_until if sending else None,
        }
    )
    for name in ("due_at", "expires_at", "created_at", "updated_at", "sent_at", "delivered_at", "lease_until",
                 "send_started_at"):
        setattr(item, name, as_utc(getattr(item, name)))  # SQLite hands back naive UTC
    return item


@router.get("/v1/deliveries", summary="List deliveries (newest first)")
def list_deliveries(
    session: SessionDep,
    page: PageDep,
    _principal: Annotated[object, Depends(require_scope("admin"))],
    status: Annotated[str | None, Query(max_length=32)] = None,
    reason: Annotated[str | None, Query(max_length=64, description="e.g. ambiguous_send")] = None,
    leased: Annotated[bool | None, Query(description="true: only rows a dispatcher holds now")] = None,
    channel: Annotated[str | None, Query(pattern="^(push|sms)$")] = None,
    campaign_id: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=64)] = None,
    zone_id: Annotated[str | None, Query(max_length=64)] = None,
    provider_message_id: Annotated[str | None, Query(max_length=128)] = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
) -> Paginated[DeliveryPublic]:
    query = select(Delivery)
    for column, value in (
        (Delivery.status, status),
        (Delivery.reason, reason),
        (Delivery.channel, channel),
        (Delivery.campaign_id, campaign_id),
        (Delivery.customer_id, customer_id),
        (Delivery.zone_id, zone_id),
        (Delivery.provider_message_id, provider_message_id),
    ):
        if value is not None:
            query = query.where(col(column) == value)
    if leased is not None:
        now = clock.now()
        held = (col(Delivery.status) == SENDING) & (col(Delivery.lease_until) > now)
        query = query.where(held if leased else ~held)
    for bound in (created_from, created_to):
        if bound is not None and bound.tzinfo is None:
            raise HTTPException(400, "created_from / created_to need a time zone (e.g. 2026-11-23T10:00:00Z)")
    if created_from is not None:
        query = query.where(col(Delivery.created_at) >= created_from.astimezone(UTC))
    if created_to is not None:
        query = query.where(col(Delivery.created_at) < created_to.astimezone(UTC))
    query = query.order_by(col(Delivery.created_at).desc(), col(Delivery.id).desc())
    rows = session.exec(query.offset(page.offset).limit(page.limit + 1)).all()
    return page.build(rows, _public)
