"""Column helpers shared by the table modules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlmodel import Field


def new_id() -> str:
    return uuid.uuid4().hex


def utc_column(*, nullable: bool = True, index: bool = False, default: Any = None) -> Any:
    """A timezone-aware timestamp column (UTC stored; SQLite keeps the offset in the text)."""
    return Field(default=default, sa_type=DateTime(timezone=True), nullable=nullable, index=index)


def json_column(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_type=JSON)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for tz-aware columns; they were stored as UTC."""
    from datetime import UTC

    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
