"""The daily CRM export takes zone events from the zone-event log (its ``crm_export`` consumer), so a
late-committed event is exported, and every event reaches exactly one file of each format."""

from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from campaigns.export.pipeline import export_file_name, write_export
from campaigns.export.scheduled import _only_run
from campaigns.export.zone_event_queue import claim
from geofence.events import TransitionKind, ZoneEvent
from geofence.service.db import create_schema, make_engine
from geofence.service.event_log import append
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings
from geofence.service.tables.exports import ExportZoneEventRow
from geofence.service.wiring.exports import (
    CRM_EXPORT_CONSUMER,
    ExportIntakeRunner,
    daily_export,
    export_incremental,
)
from tests.conftest import _truncate_all
from tests.service.campaign_factories import add_customer
from tests.service.processes import _cli, process_env

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def event(eid: str, at: datetime) -> ZoneEvent:
    return ZoneEvent(id=eid, zone_id="z1", device_id="d1", kind=TransitionKind.ENTER, at=at, visit_id=eid,
                     reason="inside")  # fmt: skip


def customer(engine: Engine) -> None:
    """The owner of device d1: every exported event is attributed (an NDJSON track needs a user)."""
    with Session(engine) as session:
        add_customer(session, T0 - DAY, cid="c1", device_id="d1")
        session.commit()


def exported_ids(export_dir: Path) -> dict[str, Counter[str]]:
    """Event ids over every zone-event file written so far, per format (NDJSON: by visit, one per event
    here)."""
    seen: dict[str, Counter[str]] = {"csv": Counter(), "ndjson": Counter()}
    for path in export_dir.glob("*/zone_events-*.csv"):
        with path.open(newline="") as f:
            seen["csv"].update(row["event_id"] for row in csv.DictReader(f))
    for path in export_dir.glob("*/zone_events-*.ndjson"):
        lines = path.read_text().splitlines()
        seen["ndjson"].update(json.loads(line)["properties"]["visit_id"] for line in lines)
    return seen


def queued_e1(engine: Engine) -> ExportIntakeRunner:
    """A customer's event e1 at T0, queued for the export by the intake (returned)."""
    intake = ExportIntakeRunner(engine, now=lambda: T0)
    customer(engine)
    append(engine, [event("e1", T0)], recorded_at=T0)
    intake.catch_up()
    return intake


def test_an_event_stamped_before_the_export_cursor_but_committed_after_it_is_exported_exactly_once(
    settings: Settings, engine: Engine
) -> None:
    runtime = bootstrap(settings, engine)
    customer(engine)
    append(engine, [event("e1", T0)], recorded_at=T0)
    with freeze_time(T0 + DAY):
        daily_export(runtime)
    # written by a transaction that stamped its time (and the event's) an hour before e1 but committed
    # only after the first export had read past e1
    append(engine, [event("late", T0 - timedelta(hours=1))], recorded_at=T0 - timedelta(hours=1))
    with freeze_time(T0 + 2 * DAY):
        daily_export(runtime)
    with freeze_time(T0 + 3 * DAY):
        daily_export(runtime)
    for fmt, ids in exported_ids(settings.export_dir).items():
        assert ids == Counter({"e1": 1, "late": 1}), fmt


def test_the_export_consumer_runs_in_the_worker_and_queues_an_event_once_per_format(
    settings: Settings, engine: Engine
) -> None:
    runtime = bootstrap(settings, engine)
    (loop,) = [lp for lp in runtime.loops if lp.id == f"consumer:{CRM_EXPORT_CONSUMER}"]
    assert loop.role == "worker"
    append(engine, [event("e1", T0), event("e2", T0)], recorded_at=T0)
    assert loop.work() is False  # everything read in one pass
    intake = runtime.export_intake.runner.consumer
    intake.handle(event("e1", T0))  # handed again (at-least-once): no second row
    with Session(engine) as s:
        rows = s.exec(select(ExportZoneEventRow)).all()
    assert sorted((r.format, r.event_id) for r in rows) == [
        ("csv", "e1"), ("csv", "e2"), ("ndjson", "e1"), ("ndjson", "e2"),
    ]  # fmt: skip


def test_a_run_stopped_after_renaming_its_file_is_not_exported_again_and_one_stopped_before_is(
    engine: Engine, tmp_path: Path
) -> None:
    intake = queued_e1(engine)
    # run 1 (csv): claimed and wrote its file, stopped before confirming
    at1 = T0 + DAY
    path1 = tmp_path / at1.strftime("%Y-%m-%d") / export_file_name("zone_events", "csv", at1)
    write_export(engine, claim(engine, "csv", str(path1), at=at1), "csv", path1)
    # run 1 (ndjson): claimed, stopped before its file was renamed into place
    claim(engine, "ndjson", str(tmp_path / "lost.ndjson"), at=at1)
    append(engine, [event("e2", T0 + DAY)], recorded_at=T0 + DAY)
    export_incremental(engine, tmp_path, at=T0 + 2 * DAY, intake=intake, kinds=("zone_events",))
    seen = exported_ids(tmp_path)
    assert seen["csv"] == Counter({"e1": 1, "e2": 1})
    assert seen["ndjson"] == Counter({"e1": 1, "e2": 1})
    with Session(engine) as s:
        assert all(r.exported_at is not None for r in s.exec(select(ExportZoneEventRow)))


@pytest.mark.postgres
def test_a_scheduled_run_skips_while_another_process_holds_the_export(pg_url: str, tmp_path: Path) -> None:
    engine = make_engine(pg_url)
    create_schema(engine)  # the clock row the log numbers from (other tests truncate it)
    try:
        customer(engine)
        append(engine, [event("e1", T0)], recorded_at=T0)
        intake = ExportIntakeRunner(engine, now=lambda: T0)
        with _only_run(engine) as first:  # another worker's run, under way
            assert first
            assert export_incremental(engine, tmp_path, at=T0 + DAY, intake=intake) == []
        assert export_incremental(engine, tmp_path, at=T0 + DAY, intake=intake) != []
    finally:
        _truncate_all(engine)
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_export_processes_started_together_put_each_event_in_one_file(
    pg_url: str, tmp_path: Path
) -> None:
    """``geofence export all --incremental`` in two processes at once, as two workers' daily runs."""
    engine = make_engine(pg_url)
    create_schema(engine)  # the clock row the log numbers from (other tests truncate it)
    try:
        customer(engine)
        append(engine, [event(f"e{i}", T0 + timedelta(seconds=i)) for i in range(200)], recorded_at=T0)
        env = process_env(pg_url, tmp_path)
        runs = [
            subprocess.Popen(_cli("export", "all", "--dir", str(tmp_path / "out"), "--incremental"), env=env,
                             cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)
        ]  # fmt: skip
        assert [run.wait(120) for run in runs] == [0, 0]
    finally:
        _truncate_all(engine)
        engine.dispose()
    for fmt, ids in exported_ids(tmp_path / "out").items():
        assert ids == Counter({f"e{i}": 1 for i in range(200)}), fmt


def test_exported_queue_rows_are_deleted_after_30_days_and_a_late_retry_within_them_is_not_exported_again(
    engine: Engine, tmp_path: Path
) -> None:
    intake = queued_e1(engine)
    export_incremental(engine, tmp_path, at=T0 + DAY, intake=intake, kinds=("zone_events",))
    append(engine, [event("e2", T0 + 20 * DAY)], recorded_at=T0 + 20 * DAY)
    export_incremental(engine, tmp_path, at=T0 + 21 * DAY, intake=intake, kinds=("zone_events",))
    intake.runner.consumer.handle(event("e1", T0))  # handed again 3 weeks on: its row is still there
    export_incremental(engine, tmp_path, at=T0 + 29 * DAY, intake=intake, kinds=("zone_events",))
    with Session(engine) as s:
        assert sorted(r.event_id for r in s.exec(select(ExportZoneEventRow))) == ["e1", "e1", "e2", "e2"]
    export_incremental(engine, tmp_path, at=T0 + 32 * DAY, intake=intake, kinds=("zone_events",))
    with Session(engine) as s:  # e1 exported on day 1, more than 30 days before: gone; e2 (day 21) kept
        assert sorted(r.event_id for r in s.exec(select(ExportZoneEventRow))) == ["e2", "e2"]
    assert exported_ids(tmp_path)["csv"] == Counter({"e1": 1, "e2": 1})
