"""Across real processes on PostgreSQL: the worker writes its zone index to the snapshot file, an API
process started later takes its index from that file (not from the database), catches up with a zone
created after the snapshot, and places devices in the zones of both."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.service.processes import (
    KIOSK,
    STORE,
    ZONE_ID,
    api_processes,
    events_of,
    fresh_postgres,
    process_env,
    seed_world,
    seed_zones,
    start_worker,
    stop,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


def test_an_api_process_starts_from_the_workers_snapshot_and_catches_up(
    pg_database: str, tmp_path: Path
) -> None:
    seed_world(pg_database, 3, zone=False)
    seed_zones(pg_database)  # the store and the kiosk, created two days ago
    snap = tmp_path / "zones.snap"
    env = process_env(
        pg_database, tmp_path, GEOFENCE_SCHEDULER__SWEEP_EVERY_S="3600", GEOFENCE_LOG__LEVEL="INFO",
        GEOFENCE_ZONE_INDEX__SNAPSHOT_PATH=str(snap), GEOFENCE_ZONE_INDEX__SNAPSHOT_EVERY_S="1",
    )
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 60
        while not snap.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert snap.exists(), (tmp_path / "worker.log").read_text()[-2000:]
        stop(worker)
        _create_zone(pg_database)  # after the snapshot, as an admin route of another process would
        with api_processes(env, tmp_path, 1) as (api,), httpx.Client() as client:
            log = (tmp_path / "api-0.log").read_text()
            assert "started from snapshot" in log, log[-2000:]
            at = datetime.now(UTC).isoformat()
            spots = [STORE, KIOSK, (48.87, 2.30)]
            fixes = [{"device_id": f"dev-{i}", "lat": lat, "lng": lng, "accuracy_m": 5.0, "recorded_at": at}
                     for i, (lat, lng) in enumerate(spots)]
            answer = client.post(f"{api.url}/v1/locations", json={"fixes": fixes}, timeout=30)
            assert answer.status_code == 200, answer.text
        enters = {(e[0], e[1]) for e in events_of(pg_database) if e[2] == "enter"}
        assert enters == {("dev-0", ZONE_ID), ("dev-1", "kiosk"), ("dev-2", "late")}
    finally:
        stop(worker)


def _create_zone(database_url: str) -> None:
    from sqlmodel import Session

    from geofence.service.db import make_engine
    from geofence.service.tables.zones import ZoneRow
    from zones.model import Circle, Zone

    zone = Zone("late", "Late", Circle(48.87, 2.30, 100))
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        session.add(ZoneRow(id=zone.id, name=zone.name, data=zone.to_dict(), created_at=now, updated_at=now))
        session.commit()
    engine.dispose()
