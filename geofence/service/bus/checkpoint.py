"""A partition's checkpoint, committed with the presences and zone events its fixes produced.

The ingest writes through ``SqlUnitOfWork`` exactly as the embedded path does (versioned presence rows
and heads, the zone-event log with its ``seq``); ``CheckpointedUnit`` adds, in the same transaction:

- each partition's row in ``ingest_partitions`` (a batch covers every partition its worker owns) moved
  to the partition's last stream sequence in the batch, only ``WHERE stream_seq = <the sequence the
  batch started after>`` — a worker that lost a partition (a stall longer than the lease) cannot commit
  over its successor, it gets ``PartitionLost`` for it instead, and nothing of the batch is committed;
- deterministic visit and event ids (``partitions.Renamer``), and events whose id is already in the log
  left out, so a batch that is replayed cannot write an event twice.

After a crash the new owner reads the row and replays the stream from the next sequence: what was
committed is not done again, what was not is done exactly as the first time would have.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import NamedTuple, cast

import msgspec
from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from geofence.events import ZoneEvent
from geofence.presence import Presence
from geofence.service.bus.partitions import Renamer
from geofence.service.db import ConnectionUnit
from geofence.service.driver_sql import DriverSql, execute, time_binder
from geofence.service.tables.bus import IngestPartitionRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.unit_of_work import SqlUnitOfWork
from geofence.store import EventStore, FixStore, PresenceStore

PARTITIONS = IngestPartitionRow.__table__  # type: ignore[attr-defined]
EVENTS = ZoneEventRow.__table__  # type: ignore[attr-defined]


class Move(NamedTuple):
    """A checkpoint's move: from stream sequence ``after`` to ``to``, having ingested ``fixes``."""

    after: int
    to: int
    fixes: int


class PartitionLost(Exception):
    """Another worker moved the partition's checkpoint: this worker no longer owns it."""

    def __init__(self, partition: int, after: int) -> None:
        super().__init__(f"partition {partition} moved past {after} by another worker")
        self.partition = partition


def read_checkpoint(engine: Engine, partition: int) -> int:
    """The partition's last committed stream sequence (0: none; the row is made then)."""
    with engine.begin() as conn:
        seq = conn.execute(
            select(PARTITIONS.c.stream_seq).where(PARTITIONS.c.partition == partition)
        ).scalar()
        if seq is None:
            conn.execute(insert(PARTITIONS).values(partition=partition, stream_seq=0, fixes=0, owner=""))
            return 0
        return int(seq)


_MOVE = DriverSql(
    "UPDATE ingest_partitions SET stream_seq = :to, fixes = fixes + :fixes, owner = :owner, updated_at = :at"
    " WHERE partition = :partition AND stream_seq = :after"
)


def move_checkpoints(
    unit: ConnectionUnit, moves: Mapping[int, Move], *, owner: str, at: datetime
) -> None:
    """Move each partition's row from ``move.after`` to ``move.to`` in ``unit``'s transaction, counting
    ``move.fixes``, in one round trip (a batch covers every partition the worker owns), or raise
    ``PartitionLost`` for a partition another worker moved on. In partition order: no deadlock."""
    if not moves:
        return
    conn = unit.connection()
    time = time_binder(conn)
    params = [{"partition": p, "after": m.after, "to": m.to, "fixes": m.fixes, "owner": owner, "at": time(at)}
              for p, m in sorted(moves.items())]
    if _MOVE.run(conn, params).rowcount == len(params):
        return
    now = dict(conn.execute(
        select(PARTITIONS.c.partition, PARTITIONS.c.stream_seq).where(PARTITIONS.c.partition.in_(list(moves)))
    ).all())
    lost = min(p for p, m in moves.items() if now.get(p) != m.to)
    raise PartitionLost(lost, moves[lost].after)


class _RenamedPresences:
    """``uow.presence`` with the visits renamed on save; everything else passes through."""

    def __init__(self, inner: object, renamer: Renamer) -> None:
        self._inner = inner
        self._renamer = renamer

    def save(self, changed: Iterable[Presence], *, seen: Mapping[str, datetime] | None = None) -> None:
        self._inner.save(self._renamer.presences(list(changed)), seen=seen)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


class _RenamedEvents:
    """``uow.events`` with deterministic ids, leaving out events the log already holds."""

    def __init__(self, unit: ConnectionUnit, inner: object, renamer: Renamer) -> None:
        self._unit = unit
        self._inner = inner
        self._renamer = renamer

    def add(self, events: Sequence[ZoneEvent], *, recorded_at: datetime) -> None:
        renamed = self._renamer.events(events)
        if not renamed:
            return
        known = known_event_ids(self._unit.connection(), [e.id for e in renamed])
        if known:
            renamed = [e for e in renamed if e.id not in known]
        self._inner.add(renamed, recorded_at=recorded_at)  # type: ignore[attr-defined]


_PG_KNOWN = "SELECT id FROM zone_events WHERE id = ANY(ARRAY(SELECT json_array_elements_text(%s::json)))"
_json = msgspec.json.Encoder()


def known_event_ids(conn: Connection, ids: list[str]) -> set[str]:
    """Those of ``ids`` already in the log. On PostgreSQL one array, sent as JSON: a batch's cold round
    (every device entering its zones) has 100,000s of events, and an ``IN`` list of as many placeholders
    costs more to build and parse than the lookup itself; a list parameter costs psycopg ~1 us an element
    to dump (in Python), the JSON ~0.05 (msgspec)."""
    if conn.dialect.name == "postgresql":
        return {row[0] for row in execute(conn, _PG_KNOWN, (_json.encode(ids).decode(),)).fetchall()}
    known: set[str] = set()
    for chunk in range(0, len(ids), 900):
        found = conn.execute(select(EVENTS.c.id).where(EVENTS.c.id.in_(ids[chunk : chunk + 900])))
        known.update(found.scalars())
    return known


class CheckpointedUnit:
    """A ``geofence.store.UnitOfWork`` over ``SqlUnitOfWork`` whose commit also moves the partitions'
    checkpoints (``moves``, by partition); ``committed`` tells whether a commit happened."""

    def __init__(
        self, unit: ConnectionUnit, inner: SqlUnitOfWork, moves: Mapping[int, Move], *,
        owner: str, at: datetime,
    ) -> None:
        renamer = Renamer()
        self._unit = unit
        self._inner = inner
        self._moves = moves
        self._owner = owner
        self._at = at
        # the store's other methods pass through ``__getattr__``, which a Protocol cannot see
        self.presence: PresenceStore = cast(PresenceStore, _RenamedPresences(inner.presence, renamer))
        self.events: EventStore = _RenamedEvents(unit, inner.events, renamer)
        self.fixes: FixStore | None = inner.fixes
        self.committed = False

    def writing(self) -> AbstractContextManager[object]:
        return self._inner.writing()

    def commit(self) -> None:
        try:
            move_checkpoints(self._unit, self._moves, owner=self._owner, at=self._at)
        except PartitionLost:
            self._inner.rollback()
            raise
        self._inner.commit()
        self.committed = True

    def rollback(self) -> None:
        self._inner.rollback()
