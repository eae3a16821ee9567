"""Table: the answers ``POST /v1/locations`` gave, kept a short while so that a retried request gets the
same answer (``geofence.service.ingest_answers``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DDL, Column, Text, event
from sqlmodel import Field, SQLModel

from geofence.service.tables._types import utc_column


class IngestAnswerRow(SQLModel, table=True):
    """One request's answer: per-fix results (only those not accepted) and its events' ids in the log (rows
    stored before held the events as rendered)."""

    __tablename__ = "ingest_answers"

    key: str = Field(primary_key=True, max_length=64)  # sha256 of the caller and the body
    created_at: datetime = utc_column(nullable=False, index=True)
    results: str = Field(sa_column=Column(Text, nullable=False))
    events: str = Field(sa_column=Column(Text, nullable=False))


# A cache for retries, written by every ingest: on PostgreSQL it is not WAL-logged (its write costs no
# flush at commit). What that gives up: the rows do not survive a crash of the database server, nor reach
# a standby; a retry after that is answered afresh (docs/presence.md).
event.listen(
    IngestAnswerRow.__table__,  # type: ignore[attr-defined]
    "after_create",
    DDL("ALTER TABLE ingest_answers SET UNLOGGED").execute_if(dialect="postgresql"),
)
