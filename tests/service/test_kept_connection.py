"""The ingest's connection, kept from batch to batch (``db.KeptConnection``): reused while batches come,
given back after a batch that failed or a pause, closed when the engine is disposed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from geofence.fixes import LocationFix
from geofence.service.db import ConnectionUnit, KeptConnection
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings
from zones.model import Circle, Zone

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def _driver(unit: ConnectionUnit) -> object:
    return unit.connection().connection.driver_connection


@contextmanager
def _checkouts(engine: Engine) -> Iterator[list[int]]:
    """The pool's checkouts while the block runs (one item each)."""
    seen: list[int] = []

    def counted(*_args: object) -> None:
        seen.append(1)

    event.listen(engine, "checkout", counted)
    try:
        yield seen
    finally:
        event.remove(engine, "checkout", counted)


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
        unit.execute(text("SELECT 1"))
        raise RuntimeError("the batch failed")
    assert engine.pool.checkedout() == 0  # handed back, its transaction rolled back
    assert kept._conn is None
    with _checkouts(engine) as checkouts:
        with ConnectionUnit(engine, kept) as unit:
            unit.execute(text("SELECT 1"))
        # the pool may hand the same connection out again (LIFO), but through a checkout: its pre-ping
        # (PostgreSQL) and reset-on-return ran in between
        assert checkouts == [1]
    kept.release()


def test_a_connection_left_idle_past_the_limit_goes_back_to_the_pool(engine: Engine) -> None:
    for idle_s, expected in ((0.0, 3), (60.0, 1)):  # idle "too long" every time: a checkout each
        kept = KeptConnection(engine, idle_s=idle_s)
        with _checkouts(engine) as checkouts:
            for _ in range(3):
                with ConnectionUnit(engine, kept) as unit:
                    unit.execute(text("SELECT 1"))
                    unit.commit()
        kept.release()
        assert len(checkouts) == expected


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
