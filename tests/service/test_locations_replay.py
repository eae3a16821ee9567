"""A real GPS trace (Sénart, IGN/LASTIG, CeCILL-C: tests/data/) replayed through the ingest path against
zones placed along it; and the ``geofence replay`` / ``geofence zones`` commands."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geofence.service.runtime import bootstrap
from geofence.traces import read_trace_gpx, thin
from zones.model import Circle, FenceSettings, Zone

TRACE = Path(__file__).resolve().parents[1] / "data" / "senart-2019-07-12.gpx"
# zones along the ride: its start/end car park, a short pause, a fast stretch (as a pedestrian zone and as a
# plain zone), and one far away
ZONES = [
    Zone("start", "Car park", Circle(48.6224, 2.5895, 80)),
    Zone("pause", "Pause", Circle(48.680858379, 2.516981335, 100), fence=FenceSettings(dwell_after_s=60)),
    Zone("walk-zone", "Fast stretch, walk zone", Circle(48.659183448, 2.515888168, 40), profile="walk"),
    Zone("passby", "Fast stretch", Circle(48.659183448, 2.515888168, 40)),
    Zone("far", "Elsewhere", Circle(48.9, 2.3, 200)),
]


def replay(engine, settings, every_s: float = 0):
    runtime = bootstrap(settings, engine)
    runtime.geofence.location_consent = None  # no customers here: the gate is tested elsewhere
    service = runtime.geofence
    fixes, errors = read_trace_gpx(TRACE.read_text(), device_id="rider")
    assert errors == [] and len(fixes) == 830
    if every_s:
        fixes = thin(fixes, timedelta(seconds=every_s))
    service.save_zones(ZONES, at=fixes[0].recorded_at - timedelta(days=1))
    events = []
    for i in range(0, len(fixes), 50):
        chunk = fixes[i : i + 50]
        events += service.ingest(chunk, at=chunk[-1].recorded_at).events
        events += service.sweep(chunk[-1].recorded_at)
    events += service.sweep(fixes[-1].recorded_at + timedelta(hours=1))
    return [(e.zone_id, e.kind.value, e.reason) for e in events]


@pytest.mark.parametrize("every_s", [0, 30])
def test_real_trace_produces_the_expected_visits(engine, settings, every_s):
    events = replay(engine, settings, every_s)
    by_zone = {z.id: [(k, r) for zid, k, r in events if zid == z.id] for z in ZONES}
    # the recording stops ~20 s after the ride is back at the car park: nothing says the rider stayed, so
    # no timer dwell (it needs the device seen a minute after its enter), only the silence exit
    assert by_zone["start"] == [("enter", "inside"), ("exit", "outside_margin"), ("enter", "inside"),
                                ("exit", "inferred_silence")]
    assert [k for k, _ in by_zone["pause"]][0] == "enter"
    assert [k for k, _ in by_zone["pause"]][-1] == "exit"
    assert by_zone["passby"] == [("enter", "inside"), ("exit", "outside_margin")]
    assert by_zone["walk-zone"] == []  # 6.5 m/s through a pedestrian zone: passing, not visiting
    assert by_zone["far"] == []


def test_pause_long_enough_dwells(engine, settings):
    events = replay(engine, settings)
    assert [k for zid, k, _ in events if zid == "pause"] == ["enter", "dwell", "exit"]


@pytest.fixture
def cli_env(monkeypatch, tmp_path):
    from geofence.service.settings import get_settings

    monkeypatch.setenv("GEOFENCE_DATABASE_URL", f"sqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("GEOFENCE_SCHEDULER__ENABLED", "false")
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_zones_import_reports_bad_lines_and_replay_prints_events(cli_env):
    from geofence.service.cli.base import app

    csv_file = cli_env / "zones.csv"
    csv_file.write_text("id,name,lat,lng,radius_m\nstart,Car park,48.6224,2.5895,80\nbad,Bad,north,2.5,80\n")
    runner = CliRunner()
    result = runner.invoke(app, ["zones", "import", str(csv_file)])
    assert result.exit_code == 0, result.output
    assert "line 3" in result.output and "imported 1 zone(s)" in result.output

    out = cli_env / "zones.geojson"
    result = runner.invoke(app, ["zones", "export", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert [f["id"] for f in json.loads(out.read_text())["features"]] == ["start"]

    args = ["replay", str(TRACE), "--device-id", "rider", "--every-s", "10", "--skip-consent"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "zone=start" in line]
    assert [line.split()[1] for line in lines] == ["enter", "exit", "enter", "exit"]
    assert "rejected" in result.output.splitlines()[-1]


def test_cli_replay_reports_a_csv_trace_line_by_line(cli_env):
    from geofence.service.cli.base import app

    trace = cli_env / "trace.csv"
    trace.write_text(
        "device_id,lat,lng,accuracy_m,recorded_at\n"
        "d1,48.6224,2.5895,10,2019-07-12T15:26:41Z\n"
        "d1,48.6224,2.5895,10,2019-07-12T15:27:41\n"
        "d1,oops,2.5895,10,2019-07-12T15:28:41Z\n"
    )
    result = CliRunner().invoke(app, ["replay", str(trace)])
    assert result.exit_code == 0, result.output
    assert "location consent" in result.output  # d1 has no customer: the gate dropped its fix
    result = CliRunner().invoke(app, ["replay", str(trace), "--skip-consent"])
    assert result.exit_code == 0, result.output
    assert "line 3" in result.output and "line 4" in result.output
    assert "1 fixes: 1 accepted" in result.output
