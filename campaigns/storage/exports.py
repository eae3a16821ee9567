"""Tables: where each scheduled export stopped (its cursor), so the next run is incremental."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from campaigns.storage.columns import utc_column

__all__ = ["ExportCursorRow"]


class ExportCursorRow(SQLModel, table=True):
    __tablename__ = "export_cursors"

    kind: str = Field(primary_key=True)  # customers | consents | opt_outs | zone_events | deliveries
    format: str = Field(primary_key=True)  # csv | ndjson
    cursor: str | None = None  # opaque; None = nothing exported yet
    last_run_at: datetime | None = utc_column()
    last_file: str | None = None
    rows_total: int = 0
