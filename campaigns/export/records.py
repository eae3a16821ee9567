"""What the exports read: plain, frozen views of our rows, already joined with the customer's keys.

The query layer (``campaigns.export.record_builders``) builds these from the tables; the pure
renderers (``contacts``, ``segment``) turn them into CSV rows and Segment records. Coordinates are
the ~100 m rounded ones the presence core stores; nothing here carries a device id or a push token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Party:
    """Who a row is about, as the CRM knows them: its id if imported from the CRM, else ours."""

    customer_id: str | None
    crm_id: str | None = None
    tz: str | None = None

    @property
    def user_id(self) -> str | None:
        return self.crm_id or self.customer_id


@dataclass(frozen=True, slots=True)
class LastVisit:
    at: datetime
    zone_id: str
    store_id: str | None
    visits: int  # distinct visits (enter/dwell stays) recorded for the customer


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: str
    crm_id: str | None
    phone_e164: str | None
    first_name: str | None
    locale: str | None
    tz: str | None
    country: str | None
    consent: dict[str, bool]  # purpose -> granted now
    last_visit: LastVisit | None
    created_at: datetime | None
    changed_at: datetime
    erased: bool = False

    @property
    def party(self) -> Party:
        return Party(self.id, self.crm_id, self.tz)


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    id: str
    party: Party
    purpose: str
    granted: bool
    occurred_at: datetime
    recorded_at: datetime
    source: str
    wording: str | None
    wording_version: str | None
    recorded_by: str | None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ZoneEventRecord:
    id: str
    party: Party
    zone_id: str
    store_id: str | None
    kind: str  # enter | dwell | exit
    at: datetime
    visit_id: str
    reason: str
    lat: float | None
    lng: float | None
    recorded_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    id: str
    party: Party
    campaign_id: str | None
    zone_id: str | None
    store_id: str | None
    visit_id: str | None
    channel: str
    provider: str | None
    status: str
    reason: str | None
    attempts: int
    error_code: str | None
    created_at: datetime
    due_at: datetime | None
    sent_at: datetime | None
    delivered_at: datetime | None
    changed_at: datetime
