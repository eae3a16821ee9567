"""The daily export job: incremental files per kind and format, cursor remembered in the table."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from geofence.service.runtime import bootstrap
from geofence.service.tables.customers import Customer
from geofence.service.tables.exports import ExportCursorRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.wiring.exports import ExportIntakeRunner, daily_export, export_incremental

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _event(eid: str, at: datetime, seq: int) -> ZoneEventRow:
    return ZoneEventRow(id=eid, seq=seq, zone_id="z1", customer_id="c1", kind="enter", at=at, visit_id=eid,
                        reason="inside", recorded_at=at)  # fmt: skip


def run_scheduled_export(engine, export_dir, *, at):
    """The scheduled export as the daily job runs it: the log's ``crm_export`` consumer drained first."""
    return export_incremental(engine, export_dir, at=at, intake=ExportIntakeRunner(engine, now=lambda: at))


def test_daily_runs_write_only_what_changed_and_remember_the_cursor(engine, tmp_path):
    with Session(engine) as s:
        s.add(Customer(id="c1", created_at=T0))
        s.add(_event("e1", T0, seq=1))
        s.commit()
    first = run_scheduled_export(engine, tmp_path, at=T0 + DAY)
    assert {(w.kind, w.fmt) for w in first} == {
        ("customers", "csv"), ("customers", "ndjson"), ("zone_events", "csv"), ("zone_events", "ndjson"),
    }  # fmt: skip
    assert all(w.path.parent.name == "2026-03-03" and w.bytes > 0 for w in first)

    assert run_scheduled_export(engine, tmp_path, at=T0 + DAY + timedelta(hours=1)) == []  # nothing new

    with Session(engine) as s:
        s.add(_event("e2", T0 + DAY + timedelta(hours=2), seq=2))
        s.commit()
    second = run_scheduled_export(engine, tmp_path, at=T0 + 2 * DAY)
    # the new visit also changes the contact's last-visit summary: the contact is exported again
    assert {(w.kind, w.fmt) for w in second} == {
        ("zone_events", "csv"), ("zone_events", "ndjson"), ("customers", "csv"), ("customers", "ndjson"),
    }  # fmt: skip
    ndjson = next(w for w in second if w.fmt == "ndjson" and w.kind == "zone_events").path.read_text()
    assert [json.loads(x)["messageId"] for x in ndjson.splitlines()]  # one record, e2 only
    assert len(ndjson.splitlines()) == 1
    with Session(engine) as s:
        state = s.get(ExportCursorRow, ("zone_events", "csv"))
        csv_run = next(w for w in second if w.kind == "zone_events" and w.fmt == "csv")
        assert state.rows_total == 2 and state.cursor == csv_run.next_cursor


def test_daily_export_job_is_registered_for_the_worker_and_writes_to_export_dir(settings, engine):
    runtime = bootstrap(settings, engine)
    (job,) = [j for j in runtime.jobs if j.id == "daily_export"]
    assert (job.every_s, job.role) == (86_400, "worker")
    with Session(engine) as s:
        s.add(Customer(id="c1", created_at=T0))
        s.commit()
    daily_export(runtime)
    assert list(settings.export_dir.glob("*/customers-*.csv"))
