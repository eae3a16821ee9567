"""What campaigns tell the store side (``campaigns.storage.outbound_events.emit``), written in the
transaction of the change itself: a message's status, a consent change, an opt-out.

Payloads carry ids and facts only — never a phone number, push token or position (``emit`` refuses
those keys):

- ``message.sent|delivered|failed|skipped``: ``delivery_id``, ``campaign_id``, ``customer_id``,
  ``device_id``, ``zone_id``, ``visit_id``, ``channel`` (push | sms), ``status`` (the delivery's own:
  ``queued`` is sent, ``undelivered`` is failed, ``cancelled`` is skipped) and ``reason`` (why it was
  skipped or failed: ``no_consent:sms_marketing``, ``consent_withdrawn:push_marketing``,
  ``token_unregistered``, ``quiet_hours``...; null when sent).
- ``consent.changed``: ``customer_id``, ``purpose``, ``granted``, ``source`` (app_screen | sms_keyword |
  api | import | admin | provider), ``consent_id`` (the ledger row, which holds the proof),
  ``cancelled_deliveries``.
- ``customer.opted_out``: ``customer_id``, ``channels`` (what stops), ``reason`` (``sms_keyword`` with
  the ``keyword`` matched, STOP or a synonym in English or French; ``provider`` for a carrier-level
  STOP reported by Twilio; ``review`` for a reply a person read; ``erasure``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session

from campaigns.storage.deliveries import CANCELLED, DELIVERED, FAILED, QUEUED, SENT, SKIPPED, UNDELIVERED
from campaigns.storage.outbound_events import emit

STATUS_EVENTS: Mapping[str, str] = {
    SENT: "message.sent", QUEUED: "message.sent", DELIVERED: "message.delivered",
    FAILED: "message.failed", UNDELIVERED: "message.failed",
    SKIPPED: "message.skipped", CANCELLED: "message.skipped",
}  # fmt: skip
MESSAGE_FIELDS = ("campaign_id", "customer_id", "device_id", "zone_id", "visit_id", "channel")


def message_status(
    session: Session, delivery: Any, status: str, *, reason: str | None, at: datetime
) -> None:
    """``message.*`` for a delivery that moved to ``status`` (nothing for waiting ones). ``delivery``
    is a ``Delivery`` row or a mapping of its columns (a RETURNING row)."""
    event_type = STATUS_EVENTS.get(status)
    if event_type is None:
        return
    get = delivery.get if isinstance(delivery, Mapping) else lambda k: getattr(delivery, k, None)
    delivery_id = str(get("id"))
    payload = {"delivery_id": delivery_id, **{k: get(k) for k in MESSAGE_FIELDS}}
    emit(session, event_type, payload | {"status": status, "reason": reason}, subject_id=delivery_id,
         occurred_at=at)  # fmt: skip


def consent_changed(
    session: Session, *, customer_id: str, purpose: str, granted: bool, source: str, consent_id: str,
    cancelled: int, at: datetime,
) -> None:
    payload = {
        "customer_id": customer_id, "purpose": purpose, "granted": granted, "source": source,
        "consent_id": consent_id, "cancelled_deliveries": cancelled,
    }  # fmt: skip
    emit(session, "consent.changed", payload, subject_id=customer_id, occurred_at=at)


def opted_out(
    session: Session, *, customer_id: str, channels: Iterable[str], reason: str, at: datetime,
    keyword: str | None = None,
) -> None:
    payload: dict[str, Any] = {"customer_id": customer_id, "channels": sorted(channels), "reason": reason}
    if keyword is not None:
        payload["keyword"] = keyword
    emit(session, "customer.opted_out", payload, subject_id=customer_id, occurred_at=at)
