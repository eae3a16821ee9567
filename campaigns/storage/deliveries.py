"""Tables: campaigns, deliveries (the durable outbox) and cap reservations.

Channels update delivery status from provider results and callbacks; an opt-out cancels waiting deliveries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from campaigns.storage.columns import json_column, new_id, utc_column

__all__ = [
    "CANCELLED", "DEFERRED", "DELIVERED", "FAILED", "PENDING", "QUEUED", "SENDING", "SENT", "SKIPPED",
    "UNDELIVERED", "WAITING_STATUSES", "CampaignRow", "CapReservation", "Delivery",
]  # fmt: skip

# Delivery statuses. "pending" and "deferred" are waiting to be claimed; "sending" is leased to a
# dispatcher; the rest are terminal except "sent"/"queued" which a provider callback may still update.
PENDING = "pending"
DEFERRED = "deferred"
SENDING = "sending"
SENT = "sent"
QUEUED = "queued"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
CANCELLED = "cancelled"
SKIPPED = "skipped"
WAITING_STATUSES = (PENDING, DEFERRED)


class Delivery(SQLModel, table=True):
    """One message to one customer on one channel. The row exists before any provider is called."""

    __tablename__ = "deliveries"

    id: str = Field(default_factory=new_id, primary_key=True)
    idempotency_key: str = Field(unique=True, index=True)
    campaign_id: str | None = Field(default=None, index=True)
    customer_id: str | None = Field(default=None, index=True)
    device_id: str | None = Field(default=None, index=True)
    zone_id: str | None = Field(default=None, index=True)
    event_id: str | None = None
    visit_id: str | None = None
    channel: str  # push | sms
    provider: str | None = None
    status: str = Field(default=PENDING, index=True)
    reason: str | None = None  # why skipped / deferred / cancelled
    locale: str | None = None
    title: str | None = None
    body: str | None = None
    data: dict[str, Any] = json_column()
    due_at: datetime = utc_column(nullable=False, index=True)
    expires_at: datetime | None = utc_column()
    lease_until: datetime | None = utc_column()
    leased_by: str | None = None
    attempts: int = 0
    provider_message_id: str | None = Field(default=None, index=True)
    error_code: str | None = None
    last_error: str | None = None
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime | None = utc_column()
    sent_at: datetime | None = utc_column()
    delivered_at: datetime | None = utc_column()


class CampaignRow(SQLModel, table=True):
    """A campaign: the validated JSON definition (``campaigns.model.Campaign``) plus indexed copies."""

    __tablename__ = "campaigns"

    id: str = Field(primary_key=True)
    name: str = Field(index=True)
    status: str = Field(default="draft", index=True)
    priority: int = 0
    definition: dict[str, Any] = json_column()
    starts_at: datetime | None = utc_column()
    ends_at: datetime | None = utc_column()
    version: int = 1
    created_at: datetime = utc_column(nullable=False)
    updated_at: datetime = utc_column(nullable=False)


class CapReservation(SQLModel, table=True):
    """One taken slot of a frequency cap, inserted in the same transaction as its delivery.

    The UNIQUE (customer, bucket, slot) constraint is what makes caps atomic: two concurrent events
    that both read "0 of 1 used" both try slot 0, and only one insert can commit.
    """

    __tablename__ = "cap_reservations"
    __table_args__ = (
        UniqueConstraint("customer_id", "bucket", "slot", name="uq_cap_reservation_slot"),
        Index("ix_cap_reservation_bucket", "customer_id", "bucket"),
    )

    id: str = Field(default_factory=new_id, primary_key=True)
    customer_id: str
    bucket: str  # e.g. "day:2026-11-23", "visit:<visit id>", "campaign:<id>:<slice>"
    slot: int
    delivery_id: str = Field(index=True)
    created_at: datetime = utc_column(nullable=False)
