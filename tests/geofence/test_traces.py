"""Trace parsing (CSV, GPX) and fix checks: bad lines are reported by number, good ones kept."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from geofence.fixes import FixLimits, LocationFix, check_fix, fix_problem
from geofence.traces import (
    Ingest,
    Sweep,
    TraceError,
    live_schedule,
    read_trace,
    read_trace_csv,
    read_trace_gpx,
    thin,
)

DATA = Path(__file__).resolve().parents[1] / "data"
AT = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def test_real_gpx_trace_parses_completely():
    fixes, errors = read_trace((DATA / "senart-2019-07-12.gpx").read_text(), name="senart.gpx", device_id="r")
    assert errors == [] and len(fixes) == 830
    assert fixes[0].recorded_at == datetime(2019, 7, 12, 15, 26, 41, tzinfo=UTC)
    assert all(48.6 < f.lat < 48.7 and 2.5 < f.lng < 2.6 for f in fixes)
    sparse = thin(fixes, timedelta(seconds=60))
    assert 80 <= len(sparse) <= 100
    gaps = [b.recorded_at - a.recorded_at for a, b in zip(sparse, sparse[1:], strict=False)]
    assert min(gaps) >= timedelta(seconds=60)


def test_gpx_points_without_time_are_reported_and_hdop_sets_accuracy():
    gpx = """<gpx xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>
      <trkpt lat="48.1" lon="2.1"><time>2019-07-12T15:00:00Z</time><hdop>3</hdop></trkpt>
      <trkpt lat="48.1" lon="2.1"></trkpt>
      <trkpt lat="x" lon="2.1"><time>2019-07-12T15:00:05Z</time></trkpt>
    </trkseg></trk></gpx>"""
    fixes, errors = read_trace_gpx(gpx)
    assert [f.accuracy_m for f in fixes] == [15.0]
    assert [e.line for e in errors] == [3, 4]  # the file lines of the points (the 2nd and 3rd point)
    assert [e.reason.split(":")[0] for e in errors] == ["point 2", "point 3"]
    assert read_trace_gpx("<gpx")[1][0].reason.startswith("not valid XML")


def test_gpx_errors_name_the_file_line_of_the_point():
    gpx = """<?xml version="1.0"?>
<gpx xmlns="http://www.topografix.com/GPX/1/1">
  <metadata><name>walk</name></metadata>
  <trk><trkseg>
    <trkpt lat="48.1" lon="2.1"><time>2019-07-12T15:00:00Z</time></trkpt>
    <trkpt lat="48.1" lon="2.1"><time>2019-07-12T15:00:05Z</time></trkpt>
    <trkpt lat="48.1" lon="2.1">
      <ele>54.0</ele>
    </trkpt>
    <trkpt lat="48.1" lon="2.1"><time>2019-07-12T15:00:15Z</time></trkpt>
  </trkseg></trk>
</gpx>"""
    fixes, errors = read_trace_gpx(gpx)
    assert len(fixes) == 3
    assert errors == [TraceError(7, "point 3: point without <time>")]  # file line 7, the 3rd point
    broken = read_trace_gpx(gpx.replace("<ele>54.0</ele>", "<ele>54.0</elx>"))[1]
    assert len(broken) == 1 and broken[0].line == 8 and broken[0].reason.startswith("not valid XML")


def test_csv_header_aliases_and_per_line_errors():
    text = ("lon,lat,time,accuracy\n2.1,48.1,2019-07-12T15:00:00Z,12\n2.1,48.1,2019-07-12T15:00:00,12\n"
            "2.1,,2019-07-12T15:00:00Z,\n")
    fixes, errors = read_trace_csv(text, device_id="d")
    assert len(fixes) == 1 and fixes[0].accuracy_m == 12 and fixes[0].device_id == "d"
    assert [e.line for e in errors] == [3, 4]
    assert "time zone" in errors[0].reason
    assert read_trace_csv("a,b\n1,2\n")[1][0].reason.startswith("header lacks")


@given(st.text(max_size=300))
def test_csv_parser_never_raises(text):
    fixes, errors = read_trace_csv(text)
    assert isinstance(fixes, list) and isinstance(errors, list)


finite = st.floats(allow_nan=True, allow_infinity=True)


@given(lat=finite, lng=finite, acc=finite, dt_s=st.integers(-10**6, 10**6), naive=st.booleans())
def test_fast_check_agrees_with_the_full_check(lat, lng, acc, dt_s, naive):
    t = AT + timedelta(seconds=dt_s)
    fix = LocationFix("d", lat, lng, acc, t.replace(tzinfo=None) if naive else t)
    limits = FixLimits()
    full = check_fix(fix, at=AT, limits=limits)
    fast = fix_problem(fix, AT - limits.max_age, AT + limits.clock_skew, limits.max_accuracy_m)
    assert (full is None) == (fast is None)
    if full is None:
        assert math.isfinite(lat) and -90 <= lat <= 90 and 0 < acc <= 5000


@given(st.text(max_size=300))
def test_gpx_parser_never_raises(text):
    fixes, errors = read_trace_gpx('<gpx><trk><trkseg><trkpt lat="1" lon="2">' + text)
    assert isinstance(fixes, list) and all(e.line >= 1 for e in errors)


def test_live_schedule_ingests_each_fix_at_its_time_and_sweeps_every_interval_through_gaps():
    t0 = datetime(2026, 3, 14, 12, 0, 5, tzinfo=UTC)
    times = [t0, t0 + timedelta(seconds=50), t0 + timedelta(seconds=55), t0 + timedelta(minutes=5)]
    fixes = [LocationFix("d", 48.0, 2.0, 10.0, t) for t in times]
    steps = list(live_schedule(fixes, sweep_every=timedelta(seconds=60), drain=timedelta(seconds=90)))
    shown = [(type(s).__name__, s.at.strftime("%H:%M:%S"), len(getattr(s, "fixes", ()))) for s in steps]
    assert shown == [
        ("Ingest", "12:00:05", 1), ("Ingest", "12:00:55", 1), ("Ingest", "12:01:00", 1),  # recorded <= tick
        ("Sweep", "12:01:00", 0), ("Sweep", "12:02:00", 0), ("Sweep", "12:03:00", 0),
        ("Sweep", "12:04:00", 0), ("Sweep", "12:05:00", 0), ("Ingest", "12:05:05", 1),
        ("Sweep", "12:06:00", 0), ("Sweep", "12:07:00", 0),
    ]
    batched = list(live_schedule(fixes, sweep_every=timedelta(seconds=60), batch=10, drain=timedelta(0)))
    assert [len(s.fixes) for s in batched if isinstance(s, Ingest)] == [3, 1]  # never across a sweep
    assert all(isinstance(s, Sweep) for s in batched[-1:])
