"""Pure CSV row builders: one header and one ``row(record) -> list[str]`` per export kind.

The contacts sheet uses HubSpot's internal property names (``firstname``, ``phone``, ``mobilephone``,
``hs_language``, ``country``) so the import maps them without a mapping step. HubSpot deduplicates
contacts on email or Record ID; our customers are SMS/app customers without email, so the sheet carries
``crm_id`` — create it in HubSpot as a custom property with "unique values" and map it as the
deduplication key (it holds the CRM's own id when the customer came from the CRM, else our customer id).
See https://knowledge.hubspot.com/import-and-export/import-objects (dedup on email / Record ID / unique
properties). Dates are UTC ISO-8601; booleans ``true``/``false`` as HubSpot checkboxes expect.

The consent sheet follows the ContactPointTypeConsent shape (who, purpose, status, when, source,
wording and version, recorded by, evidence): what GDPR art. 7(1) asks a controller to show.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from campaigns.export.records import (
    ConsentRecord,
    CustomerRecord,
    DeliveryRecord,
    ZoneEventRecord,
)

PURPOSES = ("location_offers", "push_marketing", "sms_marketing")


def iso_utc(value: datetime | None) -> str:
    """UTC ISO-8601 with a ``Z`` and millisecond precision; empty for None."""
    if value is None:
        return ""
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_NUMBER = re.compile(r"^[+-]?[\d .()]+$")


def cell(value: Any) -> str:
    """One CSV cell: text, with spreadsheet-formula injection neutralised.

    A leading ``=``/``@``/``+``/``-`` makes Excel and Sheets evaluate a cell (OWASP "CSV injection");
    such text gets a leading apostrophe, except numbers like ``+33612345678`` that must stay intact.
    """
    if value is None:
        return ""
    if type(value) is str:  # the common case, first
        if value and value[0] in "=+-@\t\r" and not _NUMBER.match(value):
            return "'" + value
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return iso_utc(value)
    text = str(value)
    if text and text[0] in "=+-@\t\r" and not _NUMBER.match(text):
        return "'" + text
    return text


CUSTOMER_HEADER = (
    "crm_id", "geofence_customer_id", "firstname", "phone", "mobilephone", "hs_language", "country",
    "geofence_timezone", "consent_location_offers", "consent_push_marketing", "consent_sms_marketing",
    "last_visit_at", "last_visit_store_id", "last_visit_zone_id", "store_visits", "geofence_created_at",
    "geofence_erased",
)  # fmt: skip


def customer_row(c: CustomerRecord) -> list[str]:
    visit = c.last_visit
    phone = None if c.erased else c.phone_e164
    return [
        cell(c.crm_id or c.id),
        cell(c.id),
        cell(None if c.erased else c.first_name),
        cell(phone),
        cell(phone),
        cell(c.locale),
        cell(c.country),
        cell(c.tz),
        *(cell(bool(c.consent.get(p, False))) for p in PURPOSES),
        cell(visit.at if visit else None),
        cell(visit.store_id if visit else None),
        cell(visit.zone_id if visit else None),
        cell(visit.visits if visit else 0),
        cell(c.created_at),
        cell(c.erased),
    ]


def _compact_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


CONSENT_HEADER = (
    "consent_id", "crm_id", "geofence_customer_id", "purpose", "status", "occurred_at", "recorded_at",
    "source", "wording", "wording_version", "recorded_by", "evidence",
)  # fmt: skip


def consent_row(e: ConsentRecord) -> list[str]:
    return [
        cell(e.id),
        cell(e.party.user_id),
        cell(e.party.customer_id),
        cell(e.purpose),
        "opt_in" if e.granted else "opt_out",
        cell(e.occurred_at),
        cell(e.recorded_at),
        cell(e.source),
        cell(e.wording),
        cell(e.wording_version),
        cell(e.recorded_by),
        cell(_compact_json(e.evidence) if e.evidence else ""),
    ]


ZONE_EVENT_HEADER = (
    "event_id", "crm_id", "geofence_customer_id", "kind", "occurred_at", "zone_id", "store_id",
    "visit_id", "reason", "lat", "lng", "recorded_at",
)  # fmt: skip


def _rounded(value: float | None) -> str:
    # Defensive: the core already rounds to ~100 m; an export must never carry more.
    return "" if value is None else f"{round(value, 3):.3f}"


def zone_event_row(e: ZoneEventRecord) -> list[str]:
    return [
        cell(e.id),
        cell(e.party.user_id),
        cell(e.party.customer_id),
        cell(e.kind),
        cell(e.at),
        cell(e.zone_id),
        cell(e.store_id),
        cell(e.visit_id),
        cell(e.reason),
        _rounded(e.lat),
        _rounded(e.lng),
        cell(e.recorded_at),
    ]


DELIVERY_HEADER = (
    "delivery_id", "crm_id", "geofence_customer_id", "campaign_id", "zone_id", "store_id", "channel",
    "provider", "status", "reason", "attempts", "error_code", "created_at", "due_at", "sent_at",
    "delivered_at", "updated_at",
)  # fmt: skip


def delivery_row(d: DeliveryRecord) -> list[str]:
    return [
        cell(d.id),
        cell(d.party.user_id),
        cell(d.party.customer_id),
        cell(d.campaign_id),
        cell(d.zone_id),
        cell(d.store_id),
        cell(d.channel),
        cell(d.provider),
        cell(d.status),
        cell(d.reason),
        cell(d.attempts),
        cell(d.error_code),
        cell(d.created_at),
        cell(d.due_at),
        cell(d.sent_at),
        cell(d.delivered_at),
        cell(d.changed_at),
    ]


CSV_LAYOUTS: dict[str, tuple[Sequence[str], Callable[[Any], list[str]]]] = {
    "customers": (CUSTOMER_HEADER, customer_row),
    "consents": (CONSENT_HEADER, consent_row),
    "opt_outs": (CONSENT_HEADER, consent_row),
    "zone_events": (ZONE_EVENT_HEADER, zone_event_row),
    "deliveries": (DELIVERY_HEADER, delivery_row),
}
