"""Column helpers shared by every table module (the campaigns' and, through ``geofence.service.tables``,
geofence's): timestamps stored as UTC and read back aware, JSON columns, random ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field


def new_id() -> str:
    return uuid.uuid4().hex


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that stores every aware value as UTC and reads it back aware.

    SQLite has no time zone type: SQLAlchemy writes the wall-clock fields and drops the offset, so a fix
    at 12:00+02:00 would be stored, and read back, as 12:00 UTC — two hours late. Converting on the way
    in makes SQLite agree with PostgreSQL's ``timestamptz``. Naive values are taken as UTC already."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        if value is not None and value.tzinfo is not None and value.utcoffset():
            return value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:  # noqa: ARG002
        return as_utc(value)


def utc_column(*, nullable: bool = True, index: bool = False, default: Any = None) -> Any:
    """A timezone-aware timestamp column, stored as UTC (see ``UtcDateTime``)."""
    return Field(default=default, sa_type=UtcDateTime(), nullable=nullable, index=index)


def json_column(default_factory: Any = dict) -> Any:
    return Field(default_factory=default_factory, sa_type=JSON)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes for tz-aware columns; they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
