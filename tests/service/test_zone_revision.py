"""The zone sync reads the zones' stamps only when ``zone_revision`` moved, and every write moves it.

Any writer counts: the service, and SQL of an operator's own (a trigger bumps the counter, on SQLite and
PostgreSQL alike), so a sync that skips the stamps never misses a change.
"""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import text

from geofence.service import clock
from geofence.service.runtime import bootstrap
from tests.geofence.tracks import STORE, T0
from zones.model import Circle, Zone


def revision(engine) -> int | None:
    with engine.connect() as conn:
        return conn.execute(text("SELECT n FROM zone_revision WHERE id = 1")).scalar()


def service(settings, engine):
    runtime = bootstrap(settings, engine)
    return runtime.geofence


def test_every_kind_of_write_to_zones_moves_the_revision_once_or_more(settings, engine):
    svc = service(settings, engine)
    seen = [revision(engine) or 0]
    svc.save_zones([Zone("a", "A", Circle(STORE[0], STORE[1], 60))], at=T0)
    seen.append(revision(engine))
    with engine.begin() as conn:  # an operator's SQL
        conn.execute(text("UPDATE zones SET name = 'A2' WHERE id = 'a'"))
    seen.append(revision(engine))
    assert svc.delete_zone("a", at=T0 + timedelta(minutes=1))
    seen.append(revision(engine))
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM zones"))
    seen.append(revision(engine))
    assert all(b > a for a, b in zip(seen, seen[1:], strict=False)), seen


def test_a_sync_with_no_write_since_reads_no_stamp_and_one_behind_its_back_is_still_applied(
    settings, engine, monkeypatch
):
    a, b = service(settings, engine), service(settings, engine)
    a.save_zones([Zone("a", "A", Circle(STORE[0], STORE[1], 60))], at=T0)
    assert b.sync_zones() == 1
    from geofence.service.wiring import zone_catalogue

    reads = []
    original = zone_catalogue._raw_stamps
    monkeypatch.setattr(zone_catalogue, "_raw_stamps", lambda *args: reads.append(1) or original(*args))
    assert b.sync_zones() == 0
    assert reads == []  # nothing written since: the revision alone was read
    moved = Zone("a", "A", Circle(STORE[0] + 0.001, STORE[1], 80))
    with engine.begin() as conn:  # written without the service: no NOTIFY, no in-process signal
        conn.execute(text("UPDATE zones SET data = :data, updated_at = :at WHERE id = 'a'"),
                     {"data": json.dumps(moved.to_dict()), "at": clock.now()})
    assert b.sync_zones() == 1
    assert reads == [1]
    assert b.index.get("a") == moved
