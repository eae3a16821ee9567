"""The send decision's inputs for one zone event: recipient, recent deliveries, matching campaigns.

``load_recipient`` applies consent (the ledger at ``at``) and suppression; ``load_history`` reads the
deliveries that count against caps and cooldowns; ``CampaignCache`` keeps parsed campaigns between
events. Kept apart from the handler so the dry run reads exactly what the handler decides on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from campaigns.cap_reservations import NOT_COUNTING
from campaigns.decide import Recipient
from campaigns.limits import PastDelivery
from campaigns.model import Campaign, CampaignInvalid, CampaignStatus, ZoneInfo, parse_campaign
from campaigns.outbox_recheck import consent_now, is_suppressed
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import Customer, Device
from campaigns.storage.deliveries import CampaignRow, Delivery
from campaigns.transactional import KEY_PREFIX as TRANSACTIONAL
from geofence.events import ZoneEvent

log = logging.getLogger(__name__)

HISTORY_SPAN = timedelta(days=8)


def load_recipient(session: Session, device_id: str | None, at: datetime) -> Recipient | None:
    """The customer behind a device, with consent (ledger at ``at``) and suppression applied."""
    device = session.get(Device, device_id) if device_id else None
    if device is None or not device.customer_id:
        return None
    customer = session.get(Customer, device.customer_id)
    if customer is None or customer.erased_at is not None:
        return None
    return Recipient(
        customer_id=customer.id,
        consents=consent_now(session, customer.id, at),
        locale=customer.locale,
        tz=customer.tz,
        country=customer.country,
        subdivision=customer.subdivision,
        phone_e164=customer.phone_e164,
        phone_suppressed=is_suppressed(session, customer.phone_hash),
        push_token_live=bool(device.push_token and device.push_token_active),
        first_name=customer.first_name,
        attributes=dict(customer.attributes or {}),
        max_offers_per_day=customer.max_offers_per_day,
        max_offers_per_week=customer.max_offers_per_week,
        platform=device.platform,
    )


def load_history(
    session: Session, customer_id: str, at: datetime, span: timedelta = HISTORY_SPAN
) -> list[PastDelivery]:
    rows = session.execute(
        select(
            Delivery.campaign_id,
            Delivery.zone_id,
            Delivery.visit_id,
            Delivery.channel,
            Delivery.sent_at,
            Delivery.due_at,
        )
        .where(Delivery.customer_id == customer_id)
        .where(Delivery.idempotency_key.not_like(f"{TRANSACTIONAL}%"))  # type: ignore[attr-defined]  # no cap
        .where(Delivery.status.not_in(NOT_COUNTING))  # type: ignore[attr-defined]
        .where(Delivery.due_at >= at - span)  # type: ignore[operator]
    )
    return [
        PastDelivery(r.campaign_id, r.zone_id, r.visit_id, r.channel, as_utc(r.sent_at or r.due_at))  # type: ignore[arg-type]
        for r in rows
    ]


@dataclass
class CampaignCache:
    """Parsed active campaigns, re-read when the table changes (cheap: one indexed query per event)."""

    _parsed: dict[tuple[str, int], Campaign]

    def __init__(self) -> None:
        self._parsed = {}

    def active(self, session: Session) -> list[Campaign]:
        rows = session.execute(
            select(CampaignRow.id, CampaignRow.version, CampaignRow.definition, CampaignRow.status).where(
                CampaignRow.status == CampaignStatus.ACTIVE.value
            )
        ).all()
        out = []
        for row in rows:
            key = (row.id, row.version)
            if key not in self._parsed:
                try:
                    self._parsed[key] = parse_campaign({**row.definition, "id": row.id, "status": row.status})
                except CampaignInvalid as exc:  # saved before a rule tightened: skip it, loudly
                    log.warning("campaign %s is not valid any more: %s", row.id, exc)
                    continue
            out.append(self._parsed[key])
        return out


def matching(campaigns: Iterable[Campaign], event: ZoneEvent, zone: ZoneInfo, at: datetime) -> list[Campaign]:
    """Live campaigns whose trigger matches, highest priority first (then by id, deterministic)."""
    found = [c for c in campaigns if c.is_live(at) and c.trigger.matches(event.kind, zone.id, zone.tags)]
    return sorted(found, key=lambda c: (-c.priority, c.id))
