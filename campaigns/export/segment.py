"""Pure builders of Segment-spec records (one dict per NDJSON line).

Spec: https://segment.com/docs/connections/spec/ — ``identify`` carries ``traits``; ``track`` carries
an ``event`` named "Object Past-tense-verb" and ``properties``. Common fields: ``type``, ``messageId``
(Segment de-duplicates on it), ``timestamp`` (UTC ISO-8601), ``userId`` and ``context``.

Choices (why):

- ``messageId`` is a UUIDv5 of (event name, row id): an incremental export is at-least-once (a delivery
  row is exported again when its status changes), and a re-sent record must carry the same id.
- ``userId`` is the CRM's id when the customer came from the CRM, else our customer id. Rows with no
  customer left (erased) are not exported as events: nothing in the CRM could be joined to them.
- Track events never carry a phone number, a device id or a push token; positions only as the ~100 m
  rounded ``lat``/``lng`` the presence core keeps. Only ``identify`` carries the phone (a trait the
  CRM needs to reach an SMS-only contact).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from campaigns.export.csv_rows import PURPOSES, iso_utc
from campaigns.export.records import (
    ConsentRecord,
    CustomerRecord,
    DeliveryRecord,
    Party,
    ZoneEventRecord,
)

# A fixed namespace so message ids are stable across processes, versions and machines.
MESSAGE_NAMESPACE = uuid.UUID("6f1c0d52-3c1e-5b7e-9a4e-2f0b7f7d2c11")

ZONE_EVENT_NAMES = {"enter": "Zone Entered", "dwell": "Zone Dwelled", "exit": "Zone Exited"}

Record = dict[str, Any]


def message_id(event: str, row_id: str) -> str:
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{event}\x1f{row_id}"))


def _context(party: Party) -> dict[str, Any]:
    return {"timezone": party.tz} if party.tz else {}


def track(event: str, row_id: str, party: Party, at: Any, properties: dict[str, Any]) -> Record | None:
    """One ``track`` record, or None when the row has no customer to attribute it to."""
    user_id = party.user_id
    if not user_id:
        return None
    record: Record = {
        "type": "track",
        "event": event,
        "messageId": message_id(event, row_id),
        "timestamp": iso_utc(at),
        "userId": user_id,
        "properties": {k: v for k, v in properties.items() if v is not None},
    }
    context = _context(party)
    if context:
        record["context"] = context
    return record


def identify(c: CustomerRecord) -> Record:
    visit = c.last_visit
    traits: dict[str, Any] = {
        "geofenceCustomerId": c.id,
        "firstName": None if c.erased else c.first_name,
        "phone": None if c.erased else c.phone_e164,
        "language": c.locale,
        "country": c.country,
        "createdAt": iso_utc(c.created_at) or None,
        "erased": c.erased or None,
        **{f"consent_{p}": bool(c.consent.get(p, False)) for p in PURPOSES},
        "lastVisitAt": iso_utc(visit.at) if visit else None,
        "lastVisitStoreId": visit.store_id if visit else None,
        "lastVisitZoneId": visit.zone_id if visit else None,
        "storeVisits": visit.visits if visit else 0,
    }
    record: Record = {
        "type": "identify",
        "messageId": message_id("identify", f"{c.id}\x1f{iso_utc(c.changed_at)}"),
        "timestamp": iso_utc(c.changed_at),
        "userId": c.party.user_id,
        "traits": {k: v for k, v in traits.items() if v is not None},
    }
    if c.tz:
        record["context"] = {"timezone": c.tz}
    return record


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def zone_event_tracks(e: ZoneEventRecord) -> Iterator[Record]:
    """``Zone Entered|Dwelled|Exited``, plus ``Store Visited`` on the enter of a store's zone."""
    props = {
        "zone_id": e.zone_id,
        "store_id": e.store_id,
        "visit_id": e.visit_id,
        "reason": e.reason,
        "lat": _rounded(e.lat),
        "lng": _rounded(e.lng),
    }
    name = ZONE_EVENT_NAMES.get(e.kind, f"Zone {e.kind.title()}")
    for record in (
        track(name, e.id, e.party, e.at, props),
        track("Store Visited", e.id, e.party, e.at, {"store_id": e.store_id, "zone_id": e.zone_id,
                                                        "visit_id": e.visit_id})
        if e.kind == "enter" and e.store_id
        else None,
    ):
        if record is not None:
            yield record


def delivery_tracks(d: DeliveryRecord) -> Iterator[Record]:
    """The offer's lifecycle so far: Sent, Delivered, Skipped (with reason) or Failed.

    Waiting rows (pending, deferred, sending) yield nothing yet: they are exported again when their
    status changes. A delivered row yields ``Offer Sent`` again; its stable messageId de-duplicates it.
    """
    props = {
        "delivery_id": d.id,
        "campaign_id": d.campaign_id,
        "zone_id": d.zone_id,
        "store_id": d.store_id,
        "visit_id": d.visit_id,
        "channel": d.channel,
        "provider": d.provider,
    }
    out: list[Record | None] = []
    if d.sent_at is not None and d.status in ("sent", "queued", "delivered", "undelivered"):
        out.append(track("Offer Sent", d.id, d.party, d.sent_at, props))
    if d.status == "delivered":
        out.append(track("Offer Delivered", d.id, d.party, d.delivered_at or d.changed_at, props))
    elif d.status in ("skipped", "cancelled"):
        reason = d.reason or d.status
        out.append(track("Offer Skipped", d.id, d.party, d.changed_at,
                         {**props, "reason": reason, "status": d.status}))
    elif d.status in ("failed", "undelivered"):
        out.append(track("Offer Failed", d.id, d.party, d.changed_at,
                         {**props, "reason": d.reason, "error_code": d.error_code, "status": d.status}))
    yield from (r for r in out if r is not None)


def _consent_props(e: ConsentRecord) -> dict[str, Any]:
    return {
        "purpose": e.purpose,
        "status": "opt_in" if e.granted else "opt_out",
        "source": e.source,
        "wording_version": e.wording_version,
        "recorded_by": e.recorded_by,
    }


def consent_tracks(e: ConsentRecord) -> Iterator[Record]:
    record = track("Consent Changed", e.id, e.party, e.occurred_at, _consent_props(e))
    if record is not None:
        yield record


def opt_out_tracks(e: ConsentRecord) -> Iterator[Record]:
    """``Unsubscribed`` for a withdrawal (the ledger's opt-out entries only)."""
    if e.granted:
        return
    record = track("Unsubscribed", e.id, e.party, e.occurred_at, _consent_props(e))
    if record is not None:
        yield record


def customer_records(c: CustomerRecord) -> Iterator[Record]:
    if c.party.user_id:
        yield identify(c)


SEGMENT_RENDERERS = {
    "customers": customer_records,
    "consents": consent_tracks,
    "opt_outs": opt_out_tracks,
    "zone_events": zone_event_tracks,
    "deliveries": delivery_tracks,
}
