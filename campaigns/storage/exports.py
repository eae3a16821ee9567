"""Tables: where each scheduled export stopped (its cursor), so the next run is incremental, and the zone
events the daily export takes from the zone-event log (``export_zone_events``)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from campaigns.storage.columns import utc_column

__all__ = ["ExportCursorRow", "ExportZoneEventRow"]


class ExportCursorRow(SQLModel, table=True):
    __tablename__ = "export_cursors"

    kind: str = Field(primary_key=True)  # customers | consents | opt_outs | zone_events | deliveries
    format: str = Field(primary_key=True)  # csv | ndjson
    cursor: str | None = None  # opaque; None = nothing exported yet
    last_run_at: datetime | None = utc_column()
    last_file: str | None = None
    rows_total: int = 0


class ExportZoneEventRow(SQLModel, table=True):
    """A zone event the daily export's log consumer queued for one file format (idempotent: the key).

    ``batch`` is the file a run claimed it for; ``exported_at`` is set once that file is complete. Rows
    stay 30 days after their export, so an event handed again (at-least-once delivery) is not queued
    again; then the scheduled run deletes them (``campaigns.export.zone_event_queue.purge_exported``)."""

    __tablename__ = "export_zone_events"

    format: str = Field(primary_key=True)  # csv | ndjson
    event_id: str = Field(primary_key=True)  # zone_events.id
    queued_at: datetime = utc_column(nullable=False)
    batch: str | None = Field(default=None, index=True)  # the file claimed for (its path)
    exported_at: datetime | None = utc_column()
