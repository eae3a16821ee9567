"""Tables: the zone-event log's consumers — where each one stands, and the events it failed on.

Owner: the event log (``geofence.service.event_log``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from geofence.service.tables._types import utc_column


class EventConsumerRow(SQLModel, table=True):
    """One per consumer of ``zone_events``: every event with ``seq`` <= ``cursor_seq`` has been handled
    (or recorded as failed in ``consumer_failures``)."""

    __tablename__ = "event_consumers"

    name: str = Field(primary_key=True)
    cursor_seq: int = Field(default=0, sa_type=BigInteger)
    updated_at: datetime | None = utc_column()


class ConsumerFailureRow(SQLModel, table=True):
    """An event a consumer failed on: retried at ``next_attempt_at`` with backoff, then parked
    (``parked_at`` set) with its last error until an operator retries it. The consumer's cursor has
    moved past it, so it blocks neither later events nor other consumers."""

    __tablename__ = "consumer_failures"

    consumer: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    seq: int = Field(sa_type=BigInteger)
    attempts: int = 1
    last_error: str
    first_failed_at: datetime = utc_column(nullable=False)
    next_attempt_at: datetime = utc_column(nullable=False, index=True)
    parked_at: datetime | None = utc_column()
