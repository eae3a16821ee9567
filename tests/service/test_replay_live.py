"""``geofence replay`` gives the events of the live path for the same fixes: each fix posted to
``POST /v1/locations`` at its own time (freezegun) and the sweep job run every minute, against the CLI
replaying the trace file into its own database. Traces with gaps, where the timers fire."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import create_engine, select
from sqlmodel import Session
from typer.testing import CliRunner

from geofence.fixes import LocationFix
from geofence.service.app import create_app
from geofence.service.tables._types import as_utc
from geofence.service.tables.presence import ZoneEventRow
from geofence.traces import live_schedule, read_trace_gpx, thin
from zones.model import Circle, Zone

DATA = Path(__file__).resolve().parents[1] / "data"
NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
SHOP = (48.8566, 2.3522)
# Bois de Vincennes: where the runner starts and ends (and where the watch stops for 32 minutes, 12:39:48
# to 13:11:53), and a place on the lap passed every few minutes
VINCENNES = [("start", 48.8453, 2.4243, 60.0), ("lap", 48.84521, 2.44154, 50.0)]


def gapped_trace() -> list[LocationFix]:
    """The issue's case: 20 fixes every 10 s at a zone's centre, a 40-minute gap, 20 more."""
    first = [NOON + timedelta(seconds=10 * i) for i in range(20)]
    second = [first[-1] + timedelta(minutes=40) + timedelta(seconds=10 * i) for i in range(20)]
    return [LocationFix("replay", SHOP[0], SHOP[1], 10.0, t) for t in first + second]


def vincennes_trace() -> list[LocationFix]:
    text = gzip.decompress((DATA / "vincennes-2018-01-31.gpx.gz").read_bytes()).decode()
    fixes, errors = read_trace_gpx(text, device_id="replay")
    assert errors == [] and len(fixes) == 5370
    return thin(fixes, timedelta(seconds=30))


def as_csv(fixes: list[LocationFix]) -> str:
    rows = [f"{f.lat},{f.lng},{f.accuracy_m},{f.recorded_at.isoformat()}" for f in fixes]
    return "lat,lng,accuracy_m,recorded_at\n" + "\n".join(rows) + "\n"


def stored_events(engine) -> list[tuple[str, str, datetime, str]]:  # (zone, kind, at, reason), sorted
    with Session(engine) as s:
        rows = s.exec(select(ZoneEventRow)).scalars()
        return sorted((r.zone_id, r.kind, as_utc(r.at), r.reason) for r in rows)


Events = list[tuple[str, str, datetime, str]]


def live(settings, engine, zones: list[Zone], fixes: list[LocationFix]) -> Events:
    """Each fix posted at its own time, the sweep job at every whole minute (the scheduler's 60 s)."""
    from geofence.service.wiring.geofence import sweep_job

    app = create_app(settings, engine=engine)
    app.state.runtime.geofence.location_consent = None
    every = timedelta(seconds=settings.scheduler.sweep_every_s)
    with TestClient(app) as client, freeze_time(fixes[0].recorded_at) as frozen:
        app.state.runtime.geofence.save_zones(zones, at=fixes[0].recorded_at)
        # the arrivals and ticks of live_schedule are those of a live deployment; each step is done here
        # by the live path's own pieces: the HTTP route and the scheduler's job function
        for step in live_schedule(fixes, sweep_every=every):
            frozen.move_to(step.at)
            if hasattr(step, "fixes"):
                body = [{"device_id": f.device_id, "lat": f.lat, "lng": f.lng, "accuracy_m": f.accuracy_m,
                         "recorded_at": f.recorded_at.isoformat()} for f in step.fixes]
                assert client.post("/v1/locations", json=body).status_code == 200
            else:
                sweep_job(app.state.runtime)
    return stored_events(engine)


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    from geofence.service.settings import get_settings

    monkeypatch.setenv("GEOFENCE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("GEOFENCE_SCHEDULER__ENABLED", "false")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def replayed(tmp_path: Path, zones: list[Zone], fixes: list[LocationFix], *args: str):
    from geofence.service.cli.base import app

    runner = CliRunner()
    zone_csv = tmp_path / "zones.csv"
    zone_csv.write_text("id,name,lat,lng,radius_m\n" + "".join(
        f"{z.id},{z.name},{z.geometry.lat},{z.geometry.lng},{z.geometry.radius_m}\n" for z in zones))
    assert runner.invoke(app, ["zones", "import", str(zone_csv)]).exit_code == 0
    trace = tmp_path / "trace.csv"
    trace.write_text(as_csv(fixes))
    result = runner.invoke(app, ["replay", str(trace), "--skip-consent", *args])
    assert result.exit_code == 0, result.output
    engine = create_engine(f"sqlite:///{tmp_path}/cli.db")
    try:
        return stored_events(engine)
    finally:
        engine.dispose()


def test_the_replay_of_a_trace_with_a_gap_gives_the_live_paths_events(cli_env, settings, engine):
    zones = [Zone("shop", "Shop", Circle(*SHOP, 50))]
    fixes = gapped_trace()
    expected = [
        ("enter", NOON, "inside"),
        ("dwell", NOON + timedelta(minutes=5), "dwell_timer"),
        ("exit", NOON + timedelta(minutes=33), "inferred_silence"),  # the head's 12:03:00 + 30 min
        ("enter", NOON + timedelta(minutes=43, seconds=10), "inside"),
        ("dwell", NOON + timedelta(minutes=48, seconds=10), "dwell_timer"),
        ("exit", NOON + timedelta(hours=1, minutes=16, seconds=10), "inferred_silence"),
    ]
    events = live(settings, engine, zones, fixes)
    assert sorted((k, at, r) for _, k, at, r in events) == sorted(expected)
    assert replayed(cli_env, zones, fixes) == events


def test_the_replay_of_a_real_trace_with_a_32_minute_gap_gives_the_live_paths_events(
    cli_env, settings, engine
):
    zones = [Zone(zid, zid, Circle(lat, lng, r)) for zid, lat, lng, r in VINCENNES]
    fixes = vincennes_trace()
    events = live(settings, engine, zones, fixes)
    gap = max(zip(fixes, fixes[1:], strict=False), key=lambda ab: ab[1].recorded_at - ab[0].recorded_at)
    start, end = gap[0].recorded_at, gap[1].recorded_at
    assert end - start > timedelta(minutes=31)
    assert [k for z, k, at, _ in events if z == "start" and start < at < end] == ["exit"]  # by silence
    assert ("start", "enter", end, "inside") in events
    assert {k for z, k, _, _ in events if z == "start"} == {"enter", "dwell", "exit"}
    assert replayed(cli_env, zones, fixes) == events
