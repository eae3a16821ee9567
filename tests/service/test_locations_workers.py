"""Two API workers (two runtimes) on one database: presence stays consistent (see docs/presence.md)."""

from __future__ import annotations

from datetime import timedelta

from geofence.service.runtime import bootstrap
from tests.geofence.tracks import STORE, T0, fix
from zones.model import Circle, Zone

AT = T0 + timedelta(minutes=30)


def worker(settings, engine):
    runtime = bootstrap(settings, engine)
    runtime.geofence.location_consent = None
    return runtime.geofence


def kinds(outcome):
    return [e.kind.value for e in outcome.events]


def test_a_zone_made_on_one_worker_reaches_the_other_and_one_visit_gets_one_enter(settings, engine):
    a, b = worker(settings, engine), worker(settings, engine)
    a.save_zones([Zone("store", "Store", Circle(STORE[0], STORE[1], 60))], at=T0 - timedelta(days=1))
    assert "store" not in b.index
    b.sync_zones()
    assert "store" in b.index

    assert kinds(a.ingest([fix(0, 0, 0)], at=AT)) == ["enter"]
    assert kinds(b.ingest([fix(0, 2, 10)], at=AT)) == []  # b reads the row: no second enter
    # the device leaves, its fixes landing on b, which never stepped it before
    b.sync_open_devices()
    out = b.ingest([fix(0, 400, 40), fix(0, 500, 70)], at=AT)
    assert kinds(out) == ["exit"]
    # a's cache still believes the device is open; a late duplicate on a changes nothing
    assert kinds(a.ingest([fix(0, 0, 10)], at=AT)) == []


def test_a_zone_deleted_on_one_worker_leaves_the_others_index(settings, engine):
    a, b = worker(settings, engine), worker(settings, engine)
    a.save_zones([Zone("store", "Store", Circle(STORE[0], STORE[1], 60))], at=T0)
    b.sync_zones()
    a.ingest([fix(0, 0, 0)], at=AT)
    assert a.delete_zone("store", at=AT)
    b.sync_zones()
    assert "store" not in b.index
    assert kinds(b.ingest([fix(0, 0, 60)], at=AT)) == []
