"""Geofence's half of a customer's access request and erasure (``campaigns.privacy.LocationData``).

Zone events keep their rows (the visit statistics stay true) but lose the device and customer; the
webhook messages about them (which name the device), open presences, their heads and any retained raw
fixes of the devices are deleted. Every worker drops its presence cache first, so no process steps a
copy of a deleted presence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, update
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from campaigns.privacy import json_row
from campaigns.storage.outbound_events import OutboundEventRow, events_of
from geofence.service.presence_cache import drop_presence_caches
from geofence.service.tables.presence import LocationFixRow, PresenceHeadRow, PresenceRow, ZoneEventRow
from geofence.service.tables.webhooks import WebhookDeliveryRow


def _events_of(customer_id: str, device_ids: Sequence[str]) -> ColumnElement[bool]:
    event_filter = col(ZoneEventRow.customer_id) == customer_id
    if device_ids:
        event_filter = or_(event_filter, col(ZoneEventRow.device_id).in_(device_ids))
    return event_filter


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class SqlLocationData:
    """The zone events, presences and raw fixes of a customer's devices, in the caller's session."""

    def export(self, session: Session, customer_id: str, device_ids: Sequence[str]) -> dict[str, Any]:
        events = session.exec(
            select(ZoneEventRow).where(_events_of(customer_id, device_ids)).order_by(col(ZoneEventRow.at))
        ).all()
        presences: Sequence[PresenceRow] = []
        fixes: Sequence[LocationFixRow] = []
        if device_ids:
            presences = session.exec(
                select(PresenceRow).where(col(PresenceRow.device_id).in_(device_ids))
            ).all()
            fixes = session.exec(
                select(LocationFixRow)
                .where(col(LocationFixRow.device_id).in_(device_ids))
                .order_by(col(LocationFixRow.recorded_at))
            ).all()
        return {
            "zone_events": [json_row(e) for e in events],
            "presences": [json_row(p) for p in presences],
            "location_fixes": [json_row(f) for f in fixes],
        }

    def erase(self, session: Session, customer_id: str, device_ids: Sequence[str]) -> dict[str, int]:
        # webhook messages about these events carry the device id: gone, sent or not (first: the
        # events are found by their device)
        theirs = select(col(ZoneEventRow.id)).where(_events_of(customer_id, device_ids))
        hooks = _count(
            session.execute(delete(WebhookDeliveryRow).where(col(WebhookDeliveryRow.event_id).in_(theirs)))
        )
        # and those about their store-side events (messages, consent, arrivals), which campaigns erase
        store = select(col(OutboundEventRow.id)).where(events_of(customer_id, device_ids))
        hooks += _count(
            session.execute(delete(WebhookDeliveryRow).where(col(WebhookDeliveryRow.event_id).in_(store)))
        )
        unlink = update(ZoneEventRow).where(_events_of(customer_id, device_ids))
        counts = {"zone_events": _count(session.execute(unlink.values(device_id=None, customer_id=None))),
                  "webhook_deliveries": hooks}
        if device_ids:
            drop_presence_caches(session)  # first (the presence clock, then rows): every worker's copies go
            counts["presences"] = _count(
                session.execute(delete(PresenceRow).where(col(PresenceRow.device_id).in_(device_ids)))
            )
            session.execute(delete(PresenceHeadRow).where(col(PresenceHeadRow.device_id).in_(device_ids)))
            counts["location_fixes"] = _count(
                session.execute(delete(LocationFixRow).where(col(LocationFixRow.device_id).in_(device_ids)))
            )
        return counts
