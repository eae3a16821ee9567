"""The scheduled export: every kind, every format, incremental, one file per kind and format into a
dated directory. Customers, consents, opt-outs and deliveries continue from the cursor remembered in the
``export_cursors`` table; zone events are the ones the zone-event log's consumer queued since the last
run (``zone_event_queue``): an event committed late is in the next file, never skipped.

At-least-once for the cursor kinds: the cursor is saved after its file is complete (renamed into place);
a crash in between exports those rows again next time, and the CRM de-duplicates (Segment ``messageId``,
HubSpot unique ``crm_id``). Zone events reach exactly one file of each format. Nothing new means no file.
One run at a time on PostgreSQL (an advisory lock; a second worker's run skips).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.export import zone_event_queue
from campaigns.export.kinds import KIND_NAMES
from campaigns.export.pipeline import WrittenExport, export_file_name, write_export
from campaigns.export.sources import plan_export
from campaigns.export.writers import FORMATS
from campaigns.storage.exports import ExportCursorRow

_LOCK_KEY = zlib.crc32(b"campaigns.export.scheduled") - 2**31


@contextmanager
def _only_run(engine: Engine) -> Iterator[bool]:
    """True when no other process is running the scheduled export (PostgreSQL; SQLite: always)."""
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": _LOCK_KEY}).scalar())
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
                conn.commit()


def run_scheduled_export(
    engine: Engine,
    export_dir: Path,
    *,
    at: datetime,
    kinds: tuple[str, ...] = KIND_NAMES,
    formats: tuple[str, ...] = FORMATS,
    settle_s: float = 60.0,
    catch_up: Callable[[], object] | None = None,
) -> list[WrittenExport]:
    """Write what changed since the last run; returns the files written.

    ``catch_up`` first brings the zone-event queue up to date (the service drains the log's
    ``crm_export`` consumer); events it has not queued yet go to the next run's file."""
    day_dir = export_dir / at.strftime("%Y-%m-%d")
    written: list[WrittenExport] = []
    with _only_run(engine) as only:
        if not only:
            return written
        if catch_up is not None:
            catch_up()
        for kind in kinds:
            for fmt in formats:
                path = day_dir / export_file_name(kind, fmt, at)
                result = _export_one(engine, kind, fmt, path, at, settle_s)
                if result is not None:
                    written.append(result)
        if zone_event_queue.QUEUED_KINDS & set(kinds):
            with Session(engine) as session, session.begin():
                zone_event_queue.purge_exported(session, before=at - zone_event_queue.KEEP_EXPORTED)
    return written


def _export_one(
    engine: Engine, kind: str, fmt: str, path: Path, at: datetime, settle_s: float
) -> WrittenExport | None:
    queued = kind in zone_event_queue.QUEUED_KINDS
    if queued:
        plan = zone_event_queue.claim(engine, fmt, str(path), at=at)
    else:
        with Session(engine) as session:
            state = session.get(ExportCursorRow, (kind, fmt))
            since = state.cursor if state else None
        plan = plan_export(engine, kind, since, at=at, settle_s=settle_s)
    if plan.upto is None:
        return None
    result = write_export(engine, plan, fmt, path)
    with Session(engine, expire_on_commit=False) as session, session.begin():  # all or nothing
        if queued:
            zone_event_queue.confirm(session, fmt, str(path), at=at)
        state = session.get(ExportCursorRow, (kind, fmt)) or ExportCursorRow(kind=kind, format=fmt)
        state.cursor = result.next_cursor
        state.last_run_at = at
        state.last_file = str(result.path)
        state.rows_total += result.rows
        session.add(state)
    return result
