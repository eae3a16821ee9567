"""Table: the store arrivals that raised an alert — one per (zone, visit), which is what keeps a
customer entering then dwelling from being announced twice."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from campaigns.storage.columns import utc_column

__all__ = ["StoreArrival"]


class StoreArrival(SQLModel, table=True):
    __tablename__ = "store_arrivals"
    __table_args__ = (UniqueConstraint("zone_id", "visit_id", name="uq_store_arrival_visit"),)

    id: str = Field(primary_key=True)  # arr_<hex>: the alert's subject id
    zone_id: str = Field(index=True)
    visit_id: str
    customer_id: str | None = Field(default=None, index=True)  # None once erased
    event_id: str  # the zone event (enter or dwell) that raised it
    alerted_at: datetime = utc_column(nullable=False)
