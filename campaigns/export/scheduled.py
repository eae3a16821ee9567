"""The scheduled export: every kind, every format, incremental from the cursor remembered in the
``export_cursors`` table, one file per kind and format into a dated directory.

At-least-once: the cursor is saved after its file is complete (renamed into place); a crash in
between exports those rows again next time, and the CRM de-duplicates (Segment ``messageId``, HubSpot
unique ``crm_id``). Nothing new means no file.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.export.pipeline import WrittenExport, export_file_name, write_export
from campaigns.export.sources import KIND_NAMES, plan_export
from campaigns.export.writers import FORMATS
from campaigns.storage.exports import ExportCursorRow


def run_scheduled_export(
    engine: Engine,
    export_dir: Path,
    *,
    at: datetime,
    kinds: tuple[str, ...] = KIND_NAMES,
    formats: tuple[str, ...] = FORMATS,
    settle_s: float = 60.0,
) -> list[WrittenExport]:
    """Write what changed since the last run; returns the files written."""
    day_dir = export_dir / at.strftime("%Y-%m-%d")
    written: list[WrittenExport] = []
    for kind in kinds:
        for fmt in formats:
            with Session(engine) as session:
                state = session.get(ExportCursorRow, (kind, fmt))
                since = state.cursor if state else None
            plan = plan_export(engine, kind, since, at=at, settle_s=settle_s)
            if plan.upto is None:
                continue
            result = write_export(engine, plan, fmt, day_dir / export_file_name(kind, fmt, at))
            with Session(engine, expire_on_commit=False) as session, session.begin():  # commit or roll back
                state = session.get(ExportCursorRow, (kind, fmt)) or ExportCursorRow(kind=kind, format=fmt)
                state.cursor = result.next_cursor
                state.last_run_at = at
                state.last_file = str(result.path)
                state.rows_total += result.rows
                session.add(state)
            written.append(result)
    return written
