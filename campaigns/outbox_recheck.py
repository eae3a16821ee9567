"""The outbox's re-check at send time: is a claimed delivery still allowed, and to which address.

Consent and suppression are re-read right before a provider is called, because they may have changed
since the decision queued the row (a STOP reply, an erased customer, an expired offer, a customer who
left the zone). Kept apart from the claim and the send loop because it only reads: it decides
``(reason to skip, address)`` for a row and builds the ``OutboundMessage``; it writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from campaigns.model import CHANNEL_PURPOSE, LOCATION_PURPOSE
from campaigns.outbox import CONTEXT_PREFIX, PURPOSE_KEY
from campaigns.providers.base import Channel, OutboundMessage
from campaigns.render import distance_m
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import ConsentEvent, Customer, Device, Suppression
from campaigns.storage.deliveries import Delivery
from campaigns.storage.geofence_views import ZONE_EVENTS


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
