"""The zone index's start-up from a snapshot file, the worker that writes it, and background compaction.

- **Snapshot.** The worker (``role="worker"``) writes its index to ``zone_index.snapshot_path`` every
  ``snapshot_every_s`` when its zones changed (``zones.snapshot``: arrays mapped on load, zones decoded on
  first use). With the file it records which state of the ``zones`` table the index reflects: the time its
  zone sync last looked (every row stamped before that minus the sync's 30 s overlap is applied), and the
  number of rows created a minute before that. A process starting up reads the file, checks that the table
  still has that many rows created by then (a snapshot of another database, or of a table since
  truncated or restored, fails the check and is ignored), then catches up through the ordinary zone sync
  from that time: rows changed since are applied as usual. Anything wrong: the index is built from the
  database as without a snapshot.
- **Compaction.** Changes go to small runs beside the base table (``ZoneIndex.add``); a lookup searches
  each. When ``ZoneIndex.compaction_due``, a job re-packs the zones into a new index off the lock (the
  lookups and changes go on against the old one; changes made meanwhile are recorded), replays those
  changes on the new index and swaps it in under the lock.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.service.tables.zones import ZoneRow
from zones.index import ZoneIndex
from zones.snapshot import SnapshotError, read_snapshot, write_snapshot

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime
    from geofence.service.wiring.geofence import GeofenceService

log = logging.getLogger(__name__)
COUNT_LAG = timedelta(seconds=60)  # rows created before looked_at - COUNT_LAG are committed by then


def _rows_created_by(engine: Engine, cut: datetime) -> int:
    with Session(engine) as session:
        stmt = select(func.count()).select_from(ZoneRow).where(ZoneRow.created_at <= cut)  # type: ignore[arg-type]
        return int(session.execute(stmt).scalar_one())


def load_snapshot(engine: Engine, path: Path) -> tuple[ZoneIndex, datetime] | None:
    """The index in ``path`` and the time its zone sync last looked, if the file is readable and matches
    the zones table (see the module's docstring); None otherwise (the caller builds from the database)."""
    if not path.exists():
        return None
    try:
        index, meta = read_snapshot(path)
        looked_at = datetime.fromisoformat(meta["looked_at"])
        rows = int(meta["rows"])
    except (SnapshotError, KeyError, TypeError, ValueError) as exc:
        log.warning("zone snapshot %s ignored: %s", path, exc)
        return None
    have = _rows_created_by(engine, looked_at - COUNT_LAG)
    if have != rows:
        log.warning("zone snapshot %s ignored: %d zone rows by then, the table has %d", path, rows, have)
        return None
    return index, looked_at


def write_zone_snapshot(service: GeofenceService, path: Path) -> bool:
    """Write this process's index to ``path`` if it changed since the last write (or the file is gone).
    Only taking the index's arrays and zones holds the lock; encoding and writing do not."""
    with service._lock:
        generation = (id(service.index), service.index.generation)
        if generation == service.snapshot_generation and path.exists():
            return False
        packed = service.index.packed()
        looked_at = service.index_looked_at
    meta: dict[str, Any] = {
        "looked_at": looked_at.isoformat(),
        "rows": _rows_created_by(service.engine, looked_at - COUNT_LAG),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    write_snapshot(packed, path, meta)
    service.snapshot_generation = generation
    log.info("zone snapshot written: %d zones, %s", len(packed.ids) + len(packed.later), path)
    return True


def compact_zones(service: GeofenceService) -> bool:
    """Re-pack the index when ``compaction_due``, off the lock (see the module's docstring)."""
    with service._lock:
        old = service.index
        if not old.compaction_due:
            return False
        zones = list(old.zones())
        service.changed_while_compacting = set()
    try:
        fresh = ZoneIndex(zones, workers=None if len(zones) > 50_000 else 1)
    finally:
        with service._lock:
            changed, service.changed_while_compacting = service.changed_while_compacting or set(), None
    with service._lock:
        if service.index is not old:  # replaced meanwhile (another compaction): nothing to swap
            return False
        again = [old.get(zid) for zid in changed if zid in old]
        if again:
            fresh.add_many(again)
        for zid in changed:
            if zid not in old and zid in fresh:
                fresh.remove(zid)
        fresh.generation = max(fresh.generation, old.generation + 1)
        service.index = fresh
        service.ingestor.index = fresh
    log.info("zone index compacted: %d zones, %d changed meanwhile", len(fresh), len(changed))
    return True


def snapshot_zones_job(runtime: Runtime) -> None:
    path = runtime.settings.zone_index.snapshot_path
    if path is not None:
        write_zone_snapshot(runtime.geofence, path)


def compact_zones_job(runtime: Runtime) -> None:
    compact_zones(runtime.geofence)
