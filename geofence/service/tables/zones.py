"""Tables: zones. The zone itself is stored as ``zones.Zone.to_dict()`` JSON; a few columns are copied out
for listing and lookups. Deletion is soft (``deleted_at``) so every API worker's index sync sees it.

Owner: location feed & presence (issue 3).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from geofence.service.tables._types import json_column, utc_column


class ZoneRow(SQLModel, table=True):
    __tablename__ = "zones"

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    store_id: str | None = Field(default=None, index=True)
    data: dict[str, Any] = json_column()  # Zone.to_dict()
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime = utc_column(nullable=False, index=True)
    deleted_at: datetime | None = utc_column(index=True)
