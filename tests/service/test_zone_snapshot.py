"""A process starts its zone index from the worker's snapshot file when the file matches the zones table,
catches up with the rows changed since, and answers what a process built from the database answers; a
snapshot of another table is ignored. Compaction swaps in a re-packed index off the lock, keeping the
changes made meanwhile."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from freezegun import freeze_time
from sqlmodel import Session

from geofence.events import EventBus
from geofence.service import clock
from geofence.service.tables.zones import ZoneRow
from geofence.service.wakeup import Wakeups
from geofence.service.wiring import zone_snapshot
from geofence.service.wiring.geofence import GeofenceService
from tests.zones.shapes import circle
from zones.index import ZoneIndex


def _service(settings, engine) -> GeofenceService:
    return GeofenceService(settings, engine, bus=EventBus(), wakeups=Wakeups())


def _answers(service: GeofenceService) -> set[tuple[int, str]]:
    return _answers_of(service.index)


def _zones(n: int, prefix: str = "z", radius: float = 397.0) -> list:
    rng = np.random.default_rng(len(prefix) + n)
    return [
        circle(f"{prefix}{i}", 48.8 + rng.uniform(0, 0.1), 2.3 + rng.uniform(0, 0.1), radius)
        for i in range(n)
    ]


def test_a_process_starts_from_the_snapshot_catches_up_and_answers_like_one_built_from_the_database(
    settings, engine, tmp_path
):
    settings.zone_index.snapshot_path = tmp_path / "zones.snap"
    t0 = clock.now() - timedelta(hours=1)
    with freeze_time(t0, tick=True):
        worker = _service(settings, engine)
        worker.save_zones(_zones(300), at=t0)
    with freeze_time(t0 + timedelta(minutes=5), tick=True):
        worker.sync_zones()
        assert zone_snapshot.write_zone_snapshot(worker, settings.zone_index.snapshot_path)
        assert not zone_snapshot.write_zone_snapshot(worker, settings.zone_index.snapshot_path)  # unchanged
    # after the snapshot: one zone moved, one deleted, one added (as another process would)
    worker.save_zones([circle("z1", 48.85, 2.35, 800), circle("new", 48.86, 2.36, 397)], at=clock.now())
    assert worker.delete_zone("z2", at=clock.now())

    api = _service(settings, engine)
    assert api.index._entries.__class__.__name__ == "LazyEntries"  # from the file, not the database
    assert "z2" not in api.index and "new" in api.index and api.index.get("z1").geometry.radius_m == 800
    settings.zone_index.snapshot_path = None
    rebuilt = _service(settings, engine)
    assert isinstance(rebuilt.index._entries, list)
    assert _answers(api) == _answers(rebuilt) == _answers(worker)
    assert len(_answers(api)) > 1000


def test_a_snapshot_of_another_zones_table_is_ignored(settings, engine, tmp_path):
    path = tmp_path / "zones.snap"
    settings.zone_index.snapshot_path = path
    with freeze_time(clock.now() - timedelta(hours=1), tick=True):
        worker = _service(settings, engine)
        worker.save_zones(_zones(50), at=clock.now())
    worker.sync_zones()
    with freeze_time(clock.now() + timedelta(minutes=5)):
        zone_snapshot.write_zone_snapshot(worker, path)
    with Session(engine) as session:  # the table is not the one the snapshot was taken of any more
        session.delete(session.get(ZoneRow, "z7"))
        session.commit()
    api = _service(settings, engine)
    assert isinstance(api.index._entries, list)  # built from the database
    assert "z7" not in api.index and len(api.index) == 49
    path.write_bytes(b"garbage")
    assert isinstance(_service(settings, engine).index._entries, list)


def test_compaction_swaps_in_a_repacked_index_keeping_changes_made_while_it_ran(
    settings, engine, monkeypatch
):
    service = _service(settings, engine)
    service.save_zones(_zones(200), at=clock.now())
    for z in _zones(40, prefix="later"):
        service.save_zones([z], at=clock.now())  # one by one: runs beside the base
    before = _answers(service)
    assert zone_snapshot.compact_zones(service) is False  # not due
    monkeypatch.setattr(ZoneIndex, "compaction_due", property(lambda self: bool(self._runs)))
    real_init = ZoneIndex.__init__

    def slow_build(self, zones=(), workers=1):  # a change lands while the new index is being built
        if len(zones) > 100:
            service.save_zones([circle("z5", 48.85, 2.35, 900)], at=clock.now())
            assert service.delete_zone("z6", at=clock.now())
        real_init(self, zones, workers)

    monkeypatch.setattr(ZoneIndex, "__init__", slow_build)
    old = service.index
    assert zone_snapshot.compact_zones(service) is True
    assert service.index is not old and service.ingestor.index is service.index
    assert service.index.generation > old.generation
    assert not service.index._runs or len(service.index._runs) == 1  # the replayed change only
    assert service.index.get("z5").geometry.radius_m == 900 and "z6" not in service.index
    assert _answers(service) == _answers_of(old) != before  # the old index's, changes included
    monkeypatch.setattr(ZoneIndex, "__init__", real_init)


def _answers_of(index: ZoneIndex) -> set[tuple[int, str]]:
    rng = np.random.default_rng(3)
    lats, lngs = rng.uniform(48.80, 48.90, 40_000), rng.uniform(2.30, 2.40, 40_000)
    found = index.match_many(lats, lngs)
    return set(zip(found.positions.tolist(), found.zone_ids().tolist(), strict=True))
