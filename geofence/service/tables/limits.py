"""Table: shared request-rate state, so that limits hold across API processes (docs/security.md)."""

from __future__ import annotations

from sqlalchemy import Column, Float
from sqlmodel import Field, SQLModel


class RateLimitRow(SQLModel, table=True):
    """One limited thing (an API key, a device, a client address's failed key checks).

    ``tat_s`` is the bucket's *theoretical arrival time* (GCRA), in epoch seconds: the bucket is full
    once the clock passes it, so a row older than that carries no information and may be deleted.
    """

    __tablename__ = "rate_limits"

    name: str = Field(primary_key=True, max_length=200)
    tat_s: float = Field(sa_column=Column(Float(precision=53), nullable=False))
    allowed: bool = True  # the last spend's outcome: RETURNING it spares a second read
