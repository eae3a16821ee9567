"""Use cases: right of access (export everything held on one customer) and erasure.

Erasure choices (GDPR art. 17 with art. 7(1) proof and the CNIL's advice to keep opposition lists as
hashes):

- The ``customers`` row stays as a tombstone (``erased_at`` set) holding no personal data: no phone,
  phone hash, first name, CRM id or attributes. Its id is an opaque random id.
- The consent ledger is kept (proof that past sends were lawful) and still references that opaque id;
  a withdrawal of every granted purpose is appended (source ``admin``) so the state ends "no".
- Devices are deleted (push tokens with them), with their open presences and any retained raw fixes;
  zone events lose their device and customer ids;
  deliveries lose customer, device, title, body and data; inbound SMS rows from the number are deleted.
- Store-side events naming the customer or a device (``outbound_events``) are deleted, with their
  webhook messages; a ``customer.opted_out`` (reason ``erasure``, the opaque id only) tells receivers.
- The number's keyed hash goes on the suppression list with reason ``erased``: a later import or API
  grant cannot re-enable SMS marketing, and START by SMS is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, or_, update
from sqlmodel import Session, col, select

from campaigns.cancellation import cancel_waiting_deliveries
from campaigns.consent import Source
from campaigns.customers import (
    SUPPRESSED_BY_ERASURE,
    current_consent,
    get_customer,
    ledger,
    record_consent,
    suppress,
)
from campaigns.phones import mask_token
from campaigns.storage.arrivals import StoreArrival
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import Customer, Device, InboundMessage
from campaigns.storage.deliveries import Delivery
from campaigns.storage.outbound_events import erase_events_of
from campaigns.store_events import opted_out


class LocationData(Protocol):
    """Geofence's data on a customer and their devices (zone events, presences, retained raw fixes),
    which campaigns do not own: read for an access request, erased with the customer. The service
    implements it (``geofence.service.location_data``)."""

    def export(self, session: Session, customer_id: str, device_ids: Sequence[str]) -> dict[str, Any]:
        """``{"zone_events": [...], "presences": [...], "location_fixes": [...]}`` as ``json_row`` dicts."""
        ...

    def erase(self, session: Session, customer_id: str, device_ids: Sequence[str]) -> dict[str, int]:
        """Unlink zone events from the customer and devices, delete presences and fixes; counts by kind."""
        ...


def _iso(value: datetime | None) -> str | None:
    value = as_utc(value)
    return value.isoformat() if value is not None else None


def json_row(obj: Any, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """A table row as JSON-ready data (datetimes as ISO 8601 UTC), without the ``skip`` columns."""
    out: dict[str, Any] = {}
    for name, value in obj.model_dump().items():
        if name in skip:
            continue
        out[name] = _iso(value) if isinstance(value, datetime) else value
    return out


def export_customer(
    session: Session, customer_id: str, *, at: datetime, location: LocationData
) -> dict[str, Any]:
    """Everything held on one customer, as JSON-ready data (tokens masked: they are credentials)."""
    customer = get_customer(session, customer_id, allow_erased=True)
    devices = list(session.exec(select(Device).where(Device.customer_id == customer_id)).all())
    device_ids = [d.id for d in devices]
    located = location.export(session, customer_id, device_ids)
    deliveries = session.exec(
        select(Delivery).where(Delivery.customer_id == customer_id).order_by(col(Delivery.created_at))
    ).all()
    inbound = []
    if customer.phone_hash:
        inbound = list(
            session.exec(select(InboundMessage).where(InboundMessage.from_hash == customer.phone_hash)).all()
        )
    return {
        "exported_at": _iso(at),
        "customer": json_row(customer, skip=("phone_hash",)),
        "consent_state": {p.value: v for p, v in current_consent(session, customer_id, at=at).items()},
        "consent_ledger": [json_row(e) for e in ledger(session, customer_id)],
        "devices": [
            {**json_row(d, skip=("push_token", "credential_hash")), "push_token": mask_token(d.push_token)}
            for d in devices
        ],
        "zone_events": located["zone_events"],
        "presences": located["presences"],
        "location_fixes": located["location_fixes"],
        "deliveries": [json_row(d) for d in deliveries],
        "inbound_sms": [json_row(m, skip=("from_hash",)) for m in inbound],
    }


def erase_customer(
    session: Session,
    customer_id: str,
    *,
    at: datetime,
    location: LocationData,
    recorded_by: str | None = None,
) -> dict[str, int]:
    """Erase one customer (see the module docstring); returns counts of what was touched."""
    customer: Customer = get_customer(session, customer_id)
    counts = {"cancelled": 0, "withdrawn": 0}
    for purpose, granted in current_consent(session, customer_id, at=at).items():
        if granted:
            _, n = record_consent(
                session, customer_id=customer_id, purpose=purpose, granted=False, source=Source.ADMIN,
                at=at, wording="erasure request", recorded_by=recorded_by, evidence={"erasure": True},
            )  # fmt: skip
            counts["withdrawn"] += 1
            counts["cancelled"] += n
    counts["cancelled"] += cancel_waiting_deliveries(
        session, customer_id=customer_id, channels=("push", "sms"), reason="erased", at=at
    )
    if customer.phone_hash:
        suppress(session, customer.phone_hash, reason=SUPPRESSED_BY_ERASURE, at=at)
        inbound = delete(InboundMessage).where(col(InboundMessage.from_hash) == customer.phone_hash)
        counts["inbound_sms"] = _count(session.execute(inbound))
    device_ids = list(session.exec(select(Device.id).where(Device.customer_id == customer_id)).all())
    located = location.erase(session, customer_id, device_ids)
    counts["zone_events"] = located.pop("zone_events")
    delivery_filter = col(Delivery.customer_id) == customer_id
    if device_ids:
        delivery_filter = or_(delivery_filter, col(Delivery.device_id).in_(device_ids))
    counts["deliveries"] = _count(
        session.execute(
            update(Delivery)
            .where(delivery_filter)
            .values(customer_id=None, device_id=None, title=None, body=None, data={}, updated_at=at)
        )
    )
    counts.update(located)  # presences and location_fixes, when the customer had devices
    counts["devices"] = _count(session.execute(delete(Device).where(col(Device.customer_id) == customer_id)))
    # the store-side events naming them (those this erasure emitted above included) go; one stays, with
    # the opaque id only: the receivers' cue to erase their own copy
    counts["store_events"] = erase_events_of(session, customer_id, device_ids)
    theirs = col(StoreArrival.customer_id) == customer_id
    session.execute(update(StoreArrival).where(theirs).values(customer_id=None))
    opted_out(session, customer_id=customer_id, channels=("push", "sms"), reason="erasure", at=at)
    customer.crm_id = customer.phone_e164 = customer.phone_hash = customer.first_name = None
    customer.subdivision = None
    customer.attributes = {}
    customer.max_offers_per_day = customer.max_offers_per_week = None
    customer.erased_at = customer.updated_at = at
    session.add(customer)
    session.flush()
    return counts


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
