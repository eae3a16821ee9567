"""Tables: zone events (and, owned by the presence domain, presence state and optional raw fixes).

Owner: location feed & presence (issue 3).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from geofence.service.tables._types import utc_column


class ZoneEventRow(SQLModel, table=True):
    __tablename__ = "zone_events"

    id: str = Field(primary_key=True)
    seq: int | None = Field(default=None, index=True)
    zone_id: str = Field(index=True)
    device_id: str | None = Field(default=None, index=True)  # None once the device's owner is erased
    customer_id: str | None = Field(default=None, index=True)
    kind: str = Field(index=True)  # enter | dwell | exit
    at: datetime = utc_column(nullable=False, index=True)
    visit_id: str = Field(index=True)
    reason: str
    lat: float | None = None  # rounded to ~100 m
    lng: float | None = None
    recorded_at: datetime | None = utc_column()
