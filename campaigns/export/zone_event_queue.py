"""The daily export's zone events come from the zone-event log, not from a time cursor over the table.

A time cursor (change time, id) misses an event whose transaction stamped its time before the cursor
but committed after an export read past it; a settle delay only narrows that window. Instead the log's
consumer ``crm_export`` (wired by the service) hands every committed event, at least once, to
:meth:`ExportIntake.handle`, which queues it once per file format: the primary key makes a second
hand-over a no-op. A scheduled run claims the queued rows of a format for its file (:func:`claim`), writes
them, and marks them exported (:func:`confirm`) in the transaction that saves its cursor: every event
reaches exactly one file of each format.

A run stopped between its claim and its confirmation leaves the claim behind; the next run confirms it
when its file exists (the file is renamed into place complete, so it holds every claimed row) and takes
the rows again otherwise.

An exported row is kept ``KEEP_EXPORTED`` (30 days) and then deleted by the scheduled run
(:func:`purge_exported`): long enough that an event handed again (the consumer re-reads what it
handled before a crash; an operator rewinds its cursor) finds its row and is not exported twice; the
table then holds about a month of events, not every event ever.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import ColumnElement, Connection, Insert, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from campaigns.export.cursor import Cursor
from campaigns.export.kinds import get_kind
from campaigns.export.record_builders import EPOCH, to_utc
from campaigns.export.sources import ExportPlan
from campaigns.export.writers import FORMATS
from campaigns.storage.exports import ExportZoneEventRow
from geofence.events import ZoneEvent

KEEP_EXPORTED = timedelta(days=30)  # then an exported row is deleted (see the module's docstring)
QUEUED_KINDS = frozenset({"zone_events"})  # the kinds a scheduled run takes from the log's queue
_QUEUE = ExportZoneEventRow.__table__  # type: ignore[attr-defined]
_FORMAT, _EVENT_ID = col(ExportZoneEventRow.format), col(ExportZoneEventRow.event_id)
_BATCH, _EXPORTED_AT = col(ExportZoneEventRow.batch), col(ExportZoneEventRow.exported_at)


class ExportIntake:
    """The handler of the log consumer ``crm_export``: queues each zone event for every file format."""

    def __init__(
        self, engine: Engine, *, now: Callable[[], datetime], formats: tuple[str, ...] = FORMATS
    ) -> None:
        self.engine = engine
        self.now = now
        self.formats = formats

    def handle(self, event: ZoneEvent) -> None:
        rows = [{"format": f, "event_id": event.id, "queued_at": self.now()} for f in self.formats]
        with self.engine.begin() as conn:
            conn.execute(_insert_new(conn), rows)


def _insert_new(conn: Connection) -> Insert:
    """INSERT that leaves an existing (format, event) row as it is: queued once, whatever the retries."""
    if conn.dialect.name == "postgresql":
        return postgresql.insert(_QUEUE).on_conflict_do_nothing()
    return sqlite.insert(_QUEUE).on_conflict_do_nothing()


def _claimed(fmt: str, batch: str) -> tuple[ColumnElement[bool], ...]:
    return (_FORMAT == fmt, _BATCH == batch, _EXPORTED_AT.is_(None))


def _recover(session: Session, fmt: str, *, at: datetime) -> None:
    """Settle the claims of a run that stopped before its confirmation (see the module's docstring)."""
    stale = session.execute(
        select(_BATCH).distinct().where(_FORMAT == fmt, _BATCH.is_not(None), _EXPORTED_AT.is_(None))
    ).scalars()
    for batch in list(stale):
        if Path(batch).exists():
            confirm(session, fmt, batch, at=at)
        else:
            session.execute(update(_QUEUE).where(*_claimed(fmt, batch)).values(batch=None))


def claim(engine: Engine, fmt: str, batch: str, *, at: datetime) -> ExportPlan:
    """Claim every queued, unexported event of ``fmt`` for the file ``batch``; the plan that writes them.

    The plan's ``upto`` is None when nothing is queued (no file). Claimed events that no longer exist
    (erased) are confirmed at once."""
    kind = get_kind("zone_events")
    with Session(engine) as session, session.begin():
        _recover(session, fmt, at=at)
        session.execute(update(_QUEUE).where(_FORMAT == fmt, _BATCH.is_(None)).values(batch=batch))
    members = kind.row_id.in_(select(_EVENT_ID).where(*_claimed(fmt, batch)))
    with Session(engine) as session, session.begin():
        last = session.execute(
            select(kind.changed_at, kind.row_id)
            .where(members)
            .order_by(kind.changed_at.desc(), kind.row_id.desc())
            .limit(1)
        ).first()
        if last is None:
            confirm(session, fmt, batch, at=at)
    upto = Cursor(to_utc(last[0]) or EPOCH, str(last[1])) if last else None
    return ExportPlan(kind=kind, since=None, upto=upto, at=at, members=members)


def confirm(session: Session, fmt: str, batch: str, *, at: datetime) -> None:
    """Mark the events claimed for ``batch`` exported (in the caller's transaction)."""
    session.execute(update(_QUEUE).where(*_claimed(fmt, batch)).values(exported_at=at))


def purge_exported(session: Session, *, before: datetime) -> int:
    """Delete the rows exported before ``before`` (in the caller's transaction); how many."""
    result = session.execute(delete(_QUEUE).where(_EXPORTED_AT.is_not(None), _EXPORTED_AT < before))
    return int(result.rowcount)  # type: ignore[attr-defined]
