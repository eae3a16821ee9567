"""Tables: click-and-collect orders (the state of ``campaigns.pickup.Order``) and their event history.

Owner: click-and-collect (``campaigns.orders``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from campaigns.storage.columns import json_column, utc_column

__all__ = ["OrderEventRow", "OrderRow"]


class OrderRow(SQLModel, table=True):
    """One order. ``version`` is the optimistic-concurrency counter: every writer updates
    ``WHERE version = <read>``, so two workers cannot both fire one event. ``fixes_read_at`` is the
    receive time up to which the device positions were fed to the state machine."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer_status", "customer_id", "status"),)

    id: str = Field(primary_key=True)  # the retailer's order id (idempotent create)
    customer_id: str = Field(index=True)
    store_zone_id: str = Field(index=True)
    status: str = Field(default="placed", index=True)  # placed | ready | picked_up | cancelled
    created_at: datetime = utc_column(nullable=False)
    ready_at: datetime = utc_column(nullable=False)
    pickup_from: datetime | None = utc_column()
    pickup_until: datetime | None = utc_column()
    notify: bool = True  # send the "ready" notice
    notify_any_hour: bool = False  # the customer asked to be told even at night
    approach: dict[str, Any] = json_column()  # campaigns.pickup.Approach.to_dict()
    approaching_at: datetime | None = utc_column()
    approaching_basis: str | None = None  # location | schedule
    arrived_at: datetime | None = utc_column()
    wrong_store_zone_id: str | None = None
    picked_up_at: datetime | None = utc_column()
    cancelled_at: datetime | None = utc_column()
    last_seen_at: datetime | None = utc_column()
    fixes_read_at: datetime | None = utc_column()
    version: int = 1
    updated_at: datetime = utc_column(nullable=False)


class OrderEventRow(SQLModel, table=True):
    """What happened to an order (``order.ready`` ... ``order.cancelled``), once each: the unique key
    (order, type, zone) holds against a second writer; the store's stats read it."""

    __tablename__ = "order_events"
    __table_args__ = (UniqueConstraint("order_id", "type", "zone_key", name="uq_order_event"),)

    id: str = Field(primary_key=True)
    order_id: str = Field(index=True)
    type: str
    zone_key: str = ""  # the zone of a wrong-store arrival (one per zone); "" otherwise
    at: datetime = utc_column(nullable=False)
    basis: str  # location | schedule | store | clock | api
    store_zone_id: str = Field(index=True)
    details: dict[str, Any] = json_column()
    recorded_at: datetime = utc_column(nullable=False)
