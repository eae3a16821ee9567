"""Reading the tables for an export: keyset pagination by batches, in constant memory.

Each export kind is a table read in (change time, id) order. One short session per batch (no
connection held while the consumer — an HTTP client, a file — is slow), ``LIMIT batch_size`` per query,
and the next batch starts strictly after the last key seen: the memory used does not grow with the
table. Works the same on SQLite and PostgreSQL (row-value comparisons spelled out with OR/AND).

An export is bounded by a snapshot taken when it starts (:func:`plan_export`): its upper key is the
last row changed at least ``settle_s`` seconds ago. That upper key is the next cursor, so it is known
before the first byte is streamed (an HTTP header), and rows committed during the export are left for
the next one. The settle delay covers transactions that stamped an earlier time but commit later.

This module plans and reads; what each kind reads is in ``campaigns.export.kinds`` and how its rows
become records in ``campaigns.export.record_builders``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.export.cursor import Cursor, decode_cursor, encode_cursor
from campaigns.export.kinds import ExportKind, get_kind
from campaigns.export.record_builders import EPOCH, to_utc


def _bind(value: datetime) -> datetime:
    # SQLite stores the wall-clock digits and drops the offset: always compare in UTC.
    return value.astimezone(UTC)


def _after(kind: ExportKind, cursor: Cursor) -> Any:
    t = _bind(cursor.changed_at)
    return or_(kind.changed_at > t, and_(kind.changed_at == t, kind.row_id > cursor.row_id))


def _upto(kind: ExportKind, cursor: Cursor) -> Any:
    t = _bind(cursor.changed_at)
    return or_(kind.changed_at < t, and_(kind.changed_at == t, kind.row_id <= cursor.row_id))


@dataclass(frozen=True)
class ExportPlan:
    """One export run: rows strictly after ``since`` up to and including ``upto`` (the snapshot)."""

    kind: ExportKind
    since: Cursor | None
    upto: Cursor | None  # None: nothing to export
    at: datetime
    members: Any = None  # an SQL condition the rows must also meet (the queued zone events of one file)

    @property
    def next_cursor(self) -> str | None:
        """What the client passes as ``since`` next time (unchanged when there was nothing new)."""
        position = self.upto or self.since
        return encode_cursor(self.kind.name, position) if position else None

    def bounds(self) -> list[Any]:
        clauses = list(self.kind.filters)
        if self.since is not None:
            clauses.append(_after(self.kind, self.since))
        if self.upto is not None:
            clauses.append(_upto(self.kind, self.upto))
        if self.members is not None:
            clauses.append(self.members)
        return clauses


def plan_export(
    engine: Engine, kind_name: str, since: str | None, *, at: datetime, settle_s: float = 2.0
) -> ExportPlan:
    """Decode ``since`` (raises ``CursorError``) and take the snapshot's upper key."""
    kind = get_kind(kind_name)
    start = decode_cursor(kind.name, since)
    horizon = _bind(at - timedelta(seconds=settle_s))
    stmt = select(kind.changed_at, kind.row_id).where(*kind.filters).where(kind.changed_at <= horizon)
    if start is not None:
        stmt = stmt.where(_after(kind, start))
    with Session(engine) as session:
        last = session.execute(stmt.order_by(kind.changed_at.desc(), kind.row_id.desc()).limit(1)).first()
    upto = Cursor(to_utc(last[0]) or EPOCH, str(last[1])) if last else None
    return ExportPlan(kind=kind, since=start, upto=upto, at=at)


def count_rows(engine: Engine, plan: ExportPlan) -> int:
    """Rows in the plan (for a progress bar); 0 when there is nothing new."""
    if plan.upto is None:
        return 0
    with Session(engine) as session:
        return int(
            session.execute(
                select(func.count()).select_from(plan.kind.table).where(*plan.bounds())
            ).scalar_one()
        )


def iter_records(engine: Engine, plan: ExportPlan, *, batch_size: int = 1000) -> Iterator[Any]:
    """Yield the plan's records in key order: one streamed, bounded read, enriched batch by batch.

    The rows come from ONE query over the snapshot's bounds, read through a server-side cursor on
    PostgreSQL (``stream_results``) and SQLite's lazy cursor, ``batch_size`` rows at a time: a single
    sort instead of one per page (a keyset query per page re-sorts the whole table when the change-time
    expression has no index). Lookups for each batch (customers' CRM ids, zones' stores) use their
    own short session.
    """
    if plan.upto is None:
        return
    kind = plan.kind
    stmt = (
        select(kind.table, kind.changed_at.label("_changed_at"))
        .where(*plan.bounds())
        .order_by(kind.changed_at, kind.row_id)
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(stmt)
        names = list(result.keys())
        for partition in result.partitions(batch_size):
            rows = [dict(zip(names, row, strict=True)) for row in partition]  # C-speed; Row.attr is not
            with Session(engine) as session:
                records = kind.to_records(session, rows, plan.at)
            yield from records
