"""The daily CRM export takes zone events from the zone-event log (its ``crm_export`` consumer), so a
late-committed event is exported, and every event reaches exactly one file of each format."""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from freezegun import freeze_time
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from campaigns.export.pipeline import export_file_name, write_export
from campaigns.export.zone_event_queue import claim
from geofence.events import TransitionKind, ZoneEvent
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
from tests.service.campaign_factories import add_customer

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
    intake = ExportIntakeRunner(engine, now=lambda: T0)
    customer(engine)
    append(engine, [event("e1", T0)], recorded_at=T0)
    intake.catch_up()
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
