"""Tables: outbound webhooks — the endpoints retail systems registered, and one delivery per
(endpoint, event) with its attempts.

Owner: outbound webhooks (``geofence.service.webhooks``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from geofence.service.tables._types import json_column, utc_column


class WebhookEndpointRow(SQLModel, table=True):
    """A receiver: its URL, the event types it wants and its signing secrets (the newest first; an
    older one keeps signing until ``secrets[i]["until"]`` so a receiver can rotate without a gap)."""

    __tablename__ = "webhook_endpoints"

    id: str = Field(primary_key=True)
    url: str
    description: str = ""
    event_types: list[str] = json_column(list)
    zone_ids: list[str] = json_column(list)  # empty: every zone; else only events naming one of these
    secrets: list[dict[str, str]] = json_column(list)  # [{"secret": "whsec_...", "until": iso | ""}]
    created_at: datetime = utc_column(nullable=False)
    disabled_at: datetime | None = utc_column()
    disabled_reason: str | None = None


class WebhookDeliveryRow(SQLModel, table=True):
    """One message to one endpoint. ``id`` is the ``webhook-id`` header: the same on every attempt,
    so a receiver de-duplicates retries. Sent in ``seq`` order per endpoint."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery_event"),
        # the retention purge reads delivered messages by age (geofence.service.webhook_retention); the
        # status prefix serves every read by status (the sender's pending, the listing's filter)
        Index("ix_webhook_deliveries_status_delivered_at", "status", "delivered_at"),
    )

    id: str = Field(primary_key=True)  # msg_<hex>
    endpoint_id: str = Field(index=True)
    event_id: str
    event_type: str
    # which log the event came from: "zone" (zone_events.seq) or "store" (outbound_events.seq); each
    # stream is sent in its own ``seq`` order per endpoint
    stream: str = Field(default="zone", sa_column_kwargs={"server_default": "zone"})
    seq: int = Field(sa_type=BigInteger)  # the event's log position: the order of sending
    occurred_at: datetime = utc_column(nullable=False, index=True)  # the event's time (replay from)
    payload: str  # the JSON body, fixed at enqueue so every attempt signs the same bytes
    status: str = "pending"  # pending | delivered | parked | cancelled
    attempts: int = 0
    next_attempt_at: datetime = utc_column(nullable=False)
    last_status: int | None = None  # the receiver's last HTTP status
    last_error: str | None = None
    created_at: datetime = utc_column(nullable=False)
    delivered_at: datetime | None = utc_column()
