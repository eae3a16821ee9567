"""The ingest's connection, kept from batch to batch (``db.KeptConnection``): reused while batches come,
given back after a batch that failed or a pause, closed when the engine is disposed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from geofence.fixes import LocationFix
from geofence.service.db import ConnectionUnit, KeptConnection
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings
from zones.model import Circle, Zone

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _driver(unit: ConnectionUnit) -> object:
    return unit.connection().connection.driver_connection


def test_batches_one_after_another_run_on_one_connection(engine: Engine) -> None:
    kept = KeptConnection(engine)
    seen = []
    for _ in range(3):
        with ConnectionUnit(engine, kept) as unit:
            seen.append(_driver(unit))
            unit.execute(text("SELECT 1"))
            unit.commit()
    assert seen[0] is seen[1] is seen[2]
    assert engine.pool.checkedout() == 1  # kept, not in the pool
    kept.release()
    assert engine.pool.checkedout() == 0


def test_a_batch_that_failed_gives_its_connection_back_and_the_next_takes_another(engine: Engine) -> None:
    kept = KeptConnection(engine)
    with pytest.raises(RuntimeError), ConnectionUnit(engine, kept) as unit:
        first = _driver(unit)
        unit.execute(text("SELECT 1"))
        raise RuntimeError("the batch failed")
    assert engine.pool.checkedout() == 0  # handed back, its transaction rolled back
    checkouts = []

    from sqlalchemy import event

    @event.listens_for(engine, "checkout")
    def counted(*_args: object) -> None:
        checkouts.append(1)

    try:
        with ConnectionUnit(engine, kept) as unit:
            unit.execute(text("SELECT 1"))
        # the pool may hand the same connection out again (LIFO), but through a checkout: its pre-ping
        # (PostgreSQL) and reset-on-return ran in between
        assert checkouts == [1]
        assert first is not None
    finally:
        event.remove(engine, "checkout", counted)
        kept.release()


def test_a_connection_left_idle_past_the_limit_goes_back_to_the_pool(engine: Engine) -> None:
    kept = KeptConnection(engine, idle_s=0.0)
    checkouts = []

    from sqlalchemy import event

    @event.listens_for(engine, "checkout")
    def counted(*_args: object) -> None:
        checkouts.append(1)

    try:
        for _ in range(3):
            with ConnectionUnit(engine, kept) as unit:
                unit.execute(text("SELECT 1"))
                unit.commit()
        assert len(checkouts) == 3  # idle "too long" every time: a checkout each
        kept_long = KeptConnection(engine, idle_s=60.0)
        checkouts.clear()
        for _ in range(3):
            with ConnectionUnit(engine, kept_long) as unit:
                unit.execute(text("SELECT 1"))
                unit.commit()
        assert len(checkouts) == 1
        kept_long.release()
    finally:
        event.remove(engine, "checkout", counted)
        kept.release()


def test_disposing_the_engine_closes_the_kept_connection(engine: Engine) -> None:
    kept = KeptConnection(engine)
    with ConnectionUnit(engine, kept) as unit:
        conn = unit.connection()
        unit.execute(text("SELECT 1"))
        unit.commit()
    engine.dispose()
    assert conn.invalidated or conn.closed
    with ConnectionUnit(engine, kept) as unit:  # and the next batch gets a new one
        assert unit.execute(text("SELECT 1")).scalar() == 1
        unit.commit()
    kept.release()


def test_the_ingest_keeps_its_connection_between_requests(settings: Settings, engine: Engine) -> None:
    runtime = bootstrap(settings, engine=engine)
    service = runtime.geofence
    service.location_consent = None
    service.save_zones([Zone("store", "Store", Circle(48.85, 2.35, 60))], at=NOW)
    drivers = []
    for k in range(3):
        fix = LocationFix("d1", 48.85, 2.35, 10.0, NOW + timedelta(seconds=10 * k))
        outcome = service.ingest([fix], at=NOW + timedelta(seconds=10 * k))
        assert [r.status for r in outcome.results] == ["accepted"]
        assert service.kept._conn is not None
        drivers.append(service.kept._conn.connection.driver_connection)
    assert drivers[0] is drivers[1] is drivers[2]
    service.kept.release()
