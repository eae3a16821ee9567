"""Outbound webhook endpoints: the event types a filter may name, what an endpoint wants, and
registering one (the admin route and ``geofence webhooks add`` both come here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session

from geofence.service.tables._types import new_id
from geofence.service.tables.webhooks import WebhookEndpointRow
from geofence.service.webhook_signing import new_secret
from geofence.service.webhook_targets import target_refusal

ZONE_TYPES = {"enter": "zone.entered", "dwell": "zone.dwelled", "exit": "zone.exited"}
# the store-side events (``campaigns.storage.outbound_events.emit``); ``order.*`` types are the orders
# module's own, accepted by name pattern (ORDER_TYPE)
STORE_TYPES = (
    "message.sent", "message.delivered", "message.failed", "message.skipped",
    "consent.changed", "customer.opted_out", "store.customer_arrived",
)  # fmt: skip
EVENT_TYPES = (*ZONE_TYPES.values(), *STORE_TYPES)
FAMILIES = ("zone", "message", "consent", "customer", "store", "order")
ORDER_TYPE = re.compile(r"^order\.[a-z][a-z_]{0,39}$")
# what an endpoint's filter may name: a type, or a family ("message.*")
FILTERS = (*EVENT_TYPES, *(f"{f}.*" for f in FAMILIES))


def known_filter(name: str) -> bool:
    return name in FILTERS or bool(ORDER_TYPE.match(name))


def register_endpoint(
    session: Session, url: str, event_types: Sequence[str], *, description: str = "",
    allow_private: bool, at: datetime, zone_ids: Sequence[str] = (),
) -> tuple[WebhookEndpointRow, str]:
    """A new endpoint and its signing secret (shown once); ValueError says why a request is refused.
    ``zone_ids``: only events naming one of these zones (a store's own feed). The admin route and
    ``geofence webhooks add`` both come here."""
    unknown = sorted(t for t in set(event_types) if not known_filter(t))
    if unknown or not event_types:
        raise ValueError(f"unknown event types {unknown}; choose from {list(FILTERS)} or order.<name>")
    if refusal := target_refusal(url, allow_private=allow_private):
        raise ValueError(f"url refused: {refusal}")
    secret = new_secret()
    row = WebhookEndpointRow(
        id=f"ep_{new_id()}", url=url, description=description, event_types=sorted(set(event_types)),
        zone_ids=sorted(set(zone_ids)), secrets=[{"secret": secret, "until": ""}], created_at=at,
    )
    session.add(row)
    session.commit()
    return row, secret




def wants(endpoint: WebhookEndpointRow, event_type: str, zone_id: str | None = None) -> bool:
    """The endpoint's filter: a type it names (or its family), and when it is limited to zones, an
    event naming one of them (an event about no zone does not go to a store's feed)."""
    if endpoint.zone_ids and zone_id not in endpoint.zone_ids:
        return False
    return any(
        t == event_type or (t.endswith(".*") and event_type.startswith(t[:-1])) for t in endpoint.event_types
    )

