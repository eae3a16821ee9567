"""Factories and a tiny recording provider for the campaign/outbox tests (plain functions)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from campaigns.providers.base import Channel, OutboundMessage, SendResult
from geofence.service.tables.campaigns import PENDING, CampaignRow, Delivery
from geofence.service.tables.customers import ConsentEvent, Customer, Device
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.zones import ZoneRow

PURPOSES = ("location_offers", "push_marketing", "sms_marketing")


@dataclass
class RecordingProvider:
    """A real provider for tests: keeps what it was asked to send; scripted errors first."""

    name: str = "recording"
    channel: Channel = Channel.PUSH
    errors: list[Exception] = field(default_factory=list)
    sent: list[OutboundMessage] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, msg: OutboundMessage) -> SendResult:
        with self._lock:
            if self.errors:
                raise self.errors.pop(0)
            self.sent.append(msg)
            return SendResult(provider_message_id=f"m-{len(self.sent)}")


def add_customer(
    session: Session,
    at: datetime,
    *,
    cid: str = "cust1",
    device_id: str = "dev1",
    consents: tuple[str, ...] = PURPOSES,
    phone: str = "+33612345678",
    **fields: Any,
) -> Customer:
    customer = Customer(
        id=cid, phone_e164=phone, phone_hash=f"h-{cid}", first_name="Ana", created_at=at, **fields
    )
    session.add(customer)
    session.flush()
    session.add(Device(id=device_id, customer_id=cid, push_token=f"tok-{device_id}", created_at=at))
    for i, purpose in enumerate(consents):
        session.add(
            ConsentEvent(
                customer_id=cid,
                seq=i + 1,
                purpose=purpose,
                granted=True,
                occurred_at=at - timedelta(days=1),
                recorded_at=at - timedelta(days=1),
                source="app_screen",
            )
        )
    session.commit()
    return customer


def add_delivery(
    session: Session,
    at: datetime,
    *,
    key: str,
    channel: str = "push",
    cid: str = "cust1",
    device_id: str = "dev1",
    zone_id: str = "z1",
    status: str = PENDING,
    data: dict[str, str] | None = None,
    expires_in: timedelta = timedelta(hours=3),
) -> Delivery:
    row = Delivery(
        idempotency_key=key,
        campaign_id="c1",
        customer_id=cid,
        device_id=device_id,
        zone_id=zone_id,
        channel=channel,
        status=status,
        body="Hello",
        title="Hi",
        data=data or {"campaign_id": "c1"},
        due_at=at,
        expires_at=at + expires_in,
        created_at=at,
    )
    session.add(row)
    session.commit()
    return row


def add_zone(
    session: Session,
    at: datetime,
    *,
    zone_id: str = "z1",
    tz: str = "Europe/Paris",
    tags: tuple[str, ...] = ("restaurant",),
    lat: float = 48.8566,
    lng: float = 2.3522,
) -> ZoneRow:
    row = ZoneRow(
        id=zone_id,
        name="Café Lumière",
        data={"tz": tz, "tags": list(tags), "country": "FR", "center": {"lat": lat, "lng": lng}},
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    session.commit()
    return row


def add_zone_event(
    session: Session,
    *,
    event_id: str,
    at: datetime,
    kind: str = "enter",
    device_id: str = "dev1",
    zone_id: str = "z1",
    visit_id: str = "v1",
    lat: float | None = None,
    lng: float | None = None,
    seq: int | None = None,
) -> ZoneEventRow:
    row = ZoneEventRow(
        id=event_id,
        seq=seq,
        zone_id=zone_id,
        device_id=device_id,
        kind=kind,
        at=at,
        visit_id=visit_id,
        reason="test",
        lat=lat,
        lng=lng,
        recorded_at=at,
    )
    session.add(row)
    session.commit()
    return row


def add_campaign(session: Session, at: datetime, definition: dict[str, Any]) -> CampaignRow:
    from campaigns.model import parse_campaign

    campaign = parse_campaign(definition)
    row = CampaignRow(
        id=campaign.id,
        name=campaign.name,
        status=campaign.status.value,
        priority=campaign.priority,
        definition=campaign.definition(),
        created_at=at,
        updated_at=at,
    )
    session.add(row)
    session.commit()
    return row
