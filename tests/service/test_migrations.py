"""Alembic migrations: a fresh PostgreSQL database migrated to head has exactly the code's tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel

from geofence.service.db import create_schema, make_engine
from geofence.service.migrations import (
    alembic_config,
    current_revision,
    has_revisions,
    migrate,
    schema_diff,
)
from geofence.service.runtime import bootstrap
from tests.conftest import PG_ADMIN_URL

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh_pg(pg_url: str) -> Iterator[Engine]:
    """An empty PostgreSQL database of its own (pg_url only proves the server is reachable)."""
    name = f"geofence_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    eng = make_engine(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}")
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


needs_revisions = pytest.mark.skipif(not has_revisions(), reason="no Alembic revision written yet")


@needs_revisions
def test_upgrade_head_on_an_empty_database_matches_the_tables_exactly(fresh_pg):
    """Catches drift: a table or column added in code without a new revision fails here."""
    with fresh_pg.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "head")
    diff = schema_diff(fresh_pg)
    assert diff == [], f"the migrations and the tables differ; write a revision: {diff}"
    assert set(inspect(fresh_pg).get_table_names()) == set(SQLModel.metadata.tables) | {"alembic_version"}


@needs_revisions
def test_downgrade_to_base_then_upgrade_again(fresh_pg):
    with fresh_pg.begin() as conn:
        config = alembic_config(connection=conn)
        command.upgrade(config, "head")
        command.downgrade(config, "base")
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
        command.upgrade(config, "head")
    assert schema_diff(fresh_pg) == []


def test_migrate_is_idempotent_and_runtime_uses_it_on_postgres(fresh_pg, settings):
    bootstrap(settings, fresh_pg)
    migrate(fresh_pg)
    assert schema_diff(fresh_pg) == []
    if has_revisions():
        assert current_revision(fresh_pg) is not None


def test_migrate_adopts_a_database_made_by_create_all(fresh_pg):
    create_schema(fresh_pg)
    migrate(fresh_pg)
    assert schema_diff(fresh_pg) == []
    if has_revisions():
        assert current_revision(fresh_pg) is not None  # stamped: later revisions apply normally


def test_migrate_on_start_off_leaves_the_database_alone(fresh_pg, settings):
    bootstrap(settings.model_copy(update={"migrate_on_start": False}), fresh_pg)
    assert inspect(fresh_pg).get_table_names() == []


def test_db_cli_upgrades_then_reports_no_drift(fresh_pg, monkeypatch):
    from typer.testing import CliRunner

    from geofence.service.cli import app
    from geofence.service.settings import get_settings

    monkeypatch.setenv("GEOFENCE_DATABASE_URL", fresh_pg.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        upgraded = runner.invoke(app, ["db", "upgrade"])
        assert upgraded.exit_code == 0, upgraded.output
        checked = runner.invoke(app, ["db", "check"])
        assert checked.exit_code == 0 and "matches" in checked.output
        with fresh_pg.begin() as conn:
            conn.execute(text("ALTER TABLE api_keys ADD COLUMN surprise integer"))
        drift = runner.invoke(app, ["db", "check"])
        assert drift.exit_code == 1 and "surprise" in drift.output
    finally:
        get_settings.cache_clear()


@needs_revisions
def test_0002_gives_every_device_with_presences_a_head_and_folds_outside_rows_into_it(fresh_pg):
    with fresh_pg.begin() as conn:
        config = alembic_config(connection=conn)
        command.upgrade(config, "0001")
        conn.execute(text(
            "INSERT INTO presences (device_id, zone_id, state, last_fix_at, pending_fixes, dwelled, version) "
            "VALUES ('d1', 'z1', 'inside', '2026-03-14 10:00:00+00', 0, false, 3), "
            "       ('d1', 'z2', 'outside', '2026-03-14 10:05:00+00', 0, false, 2), "
            "       ('d2', 'z1', 'outside', '2026-03-14 09:00:00+00', 0, false, 1)"
        ))
        command.upgrade(config, "head")
        heads = conn.execute(text(
            "SELECT device_id, version, extract(epoch from last_fix_at)::bigint FROM presence_heads "
            "ORDER BY device_id"
        )).all()
        rows = conn.execute(text("SELECT device_id, zone_id, state FROM presences")).all()
    assert [tuple(h) for h in heads] == [("d1", 1, 1773482700), ("d2", 1, 1773478800)]  # the latest fix
    assert [tuple(r) for r in rows] == [("d1", "z1", "inside")]


@needs_revisions
def test_0003_starts_the_change_feed_with_every_head_current(fresh_pg):
    """Heads written before the feed keep their version as ``rows_version`` (a cached copy stays valid
    through later heartbeats) and sit before the clock's first tick, which the migration creates."""
    with fresh_pg.begin() as conn:
        config = alembic_config(connection=conn)
        command.upgrade(config, "0002")
        conn.execute(text("INSERT INTO presence_heads (device_id, version) VALUES ('d1', 4)"))
        command.upgrade(config, "head")
        heads = conn.execute(text("SELECT device_id, version, rows_version, seq FROM presence_heads")).all()
        clock = conn.execute(text("SELECT id, seq, resets FROM presence_clock")).all()
    assert [tuple(h) for h in heads] == [("d1", 4, 4, 0)]
    assert [tuple(c) for c in clock] == [(1, 0, 0)]


@needs_revisions
def test_0014_starts_the_export_queue_where_the_old_time_cursor_stopped(fresh_pg):
    """Logged events at or before the daily export's old cursor are marked exported (the log's consumer
    then finds them queued already), events older than the log after it are queued; nothing else."""
    from campaigns.export.cursor import Cursor, encode_cursor

    cursor = encode_cursor("zone_events", Cursor(datetime(2026, 3, 14, 10, 0, tzinfo=UTC), "b"))
    with fresh_pg.begin() as conn:
        config = alembic_config(connection=conn)
        command.upgrade(config, "orders_click_and_collect")
        ten = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
        for eid, seq, minutes in [("a", 1, 0), ("b", 2, 0), ("c", 3, 0), ("d", 4, 5), ("old0", None, -1),
                                  ("old2", None, 1)]:  # fmt: skip
            conn.execute(text(
                "INSERT INTO zone_events (id, seq, zone_id, kind, at, visit_id, reason, recorded_at) VALUES "
                "(:id, :seq, 'z', 'enter', :at, :id, 'inside', :at)"
            ), {"id": eid, "seq": seq, "at": ten + timedelta(minutes=minutes)})
        conn.execute(text(
            "INSERT INTO export_cursors (kind, format, cursor, last_file, rows_total) "
            "VALUES ('zone_events', 'csv', :c, 'f.csv', 2)"
        ), {"c": cursor})
        command.upgrade(config, "head")
        rows = conn.execute(text(
            "SELECT format, event_id, batch, exported_at IS NOT NULL FROM export_zone_events "
            "ORDER BY format, event_id"
        )).all()
    assert [tuple(r) for r in rows] == [
        ("csv", "a", "f.csv", True), ("csv", "b", "f.csv", True), ("csv", "old2", None, False),
        ("ndjson", "old0", None, False), ("ndjson", "old2", None, False),  # never exported in NDJSON
    ]  # fmt: skip
