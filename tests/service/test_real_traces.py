"""Presence on real GPS traces (tests/data: a bike ride at Sénart, a run at Vincennes with pauses and a
32-minute gap), replayed as live at full rate, thinned to 30 s and to 2 min: no flapping, every long
pause entered and dwelled, GPS jumps rejected. The regression guard of the behaviour the engine had on
traces it had not seen before."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import pytest

from geofence.fixes import LocationFix, distance_m
from geofence.service.runtime import bootstrap
from geofence.traces import read_trace_gpx, thin
from tests.geofence.tracks import offset
from zones.model import Circle, FenceSettings, Zone

pytestmark = pytest.mark.slow  # ~1 min: 5,370 fixes ingested one by one, as posted live

DATA = Path(__file__).resolve().parents[1] / "data"
FLAP = timedelta(minutes=2)  # an exit and a new enter of one zone closer than this is a flap, unless the
LEFT_M = 35.0  # full-rate trace really left: two fixes in a row this far beyond the edge (margin + accuracy)
PAUSE = timedelta(minutes=5)  # a pause at least this long (within PAUSE_M) must be entered and dwelled
PAUSE_M = 30.0
JUMP_MPS = 92.0  # the jumps of the worst trace seen, far above max_speed_mps (70)


def read(name: str) -> list[LocationFix]:
    raw = (DATA / name).read_bytes()
    text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
    fixes, errors = read_trace_gpx(text, device_id="walker")
    assert errors == []
    return fixes


def pauses(fixes: list[LocationFix]) -> list[tuple[float, float]]:
    """Centres of the places the trace stays within PAUSE_M for PAUSE or longer (one per place)."""
    found: list[tuple[float, float]] = []
    i = 0
    while i < len(fixes):
        j = i
        while j + 1 < len(fixes) and distance_m(fixes[i].lat, fixes[i].lng, fixes[j + 1].lat,
                                                fixes[j + 1].lng) < PAUSE_M:
            j += 1
        if fixes[j].recorded_at - fixes[i].recorded_at >= PAUSE:
            lat = sum(f.lat for f in fixes[i : j + 1]) / (j - i + 1)
            lng = sum(f.lng for f in fixes[i : j + 1]) / (j - i + 1)
            if all(distance_m(lat, lng, a, b) > 2 * PAUSE_M for a, b in found):
                found.append((lat, lng))
            i = j + 1
        else:
            i += 1
    return found


def zones_for(fixes: list[LocationFix]) -> tuple[list[Zone], list[str]]:
    """Zones along the route (every 40th fix: 40, 80 and 150 m, plain and pedestrian) and one at each
    pause (60 m, dwell after 2 minutes)."""
    route = [Zone(f"route-{k}", f"route {k}", Circle(f.lat, f.lng, (40.0, 80.0, 150.0)[k % 3]),
                  profile="walk" if k % 2 else None)
             for k, f in enumerate(fixes[::40])]
    stops = [Zone(f"pause-{k}", f"pause {k}", Circle(lat, lng, 60.0), fence=FenceSettings(dwell_after_s=120))
             for k, (lat, lng) in enumerate(pauses(fixes))]
    return route + stops, [z.id for z in stops]


def really_left(zone: Zone, trace: list[LocationFix], since: timedelta, exit_fix, enter) -> bool:
    """Whether the full-rate trace went out of ``zone`` for real between an exit and the next enter (the
    exit's fix back to ``since`` before it, to the enter): two fixes in a row LEFT_M beyond its edge."""
    c = zone.geometry
    assert isinstance(c, Circle)
    out = [distance_m(c.lat, c.lng, f.lat, f.lng) - c.radius_m >= LEFT_M for f in trace
           if exit_fix.at - since <= f.recorded_at <= enter.at]
    return any(a and b for a, b in zip(out, out[1:], strict=False))


def with_jumps(fixes: list[LocationFix]) -> tuple[list[LocationFix], list[LocationFix]]:
    """Three fixes moved north at JUMP_MPS from the fix before them (GPS jumps), and those fixes."""
    out, jumps = list(fixes), []
    for k in (len(fixes) // 4, len(fixes) // 2, 3 * len(fixes) // 4):
        before, f = out[k - 1], out[k]
        dt = (f.recorded_at - before.recorded_at).total_seconds()
        lat, lng = offset(before.lat, before.lng, JUMP_MPS * dt + 2 * f.accuracy_m, 0)
        out[k] = LocationFix(f.device_id, lat, lng, f.accuracy_m, f.recorded_at)
        jumps.append(out[k])
    return out, jumps


@pytest.mark.parametrize("every_s", [0, 30, 120])
@pytest.mark.parametrize("trace", ["senart-2019-07-12.gpx", "vincennes-2018-01-31.gpx.gz"])
def test_real_traces_never_flap_dwell_at_every_pause_and_reject_jumps(
    settings, sqlite_engine, trace, every_s
):
    original = read(trace)
    fixes = thin(original, timedelta(seconds=every_s)) if every_s else original
    zones, pause_ids = zones_for(original)
    fixes, jumps = with_jumps(fixes)
    runtime = bootstrap(settings, sqlite_engine)
    runtime.geofence.location_consent = None
    service = runtime.geofence
    service.save_zones(zones, at=fixes[0].recorded_at)
    events, rejected = [], []
    for outcome, fired in service.replay(fixes, sweep_every=timedelta(seconds=60)):
        events += fired
        if outcome is not None:
            rejected += [r.reason for r in outcome.results if r.status == "rejected"]

    assert rejected == ["implausible_jump"] * 3
    assert not {e.at for e in events} & {f.recorded_at for f in jumps}  # nothing happens at a jump
    by_zone: dict[str, list] = {}
    for e in events:
        by_zone.setdefault(e.zone_id, []).append(e)
    # (an exit for silence, in the run's 32-minute gap, is not a flap: the trace said nothing)
    where = {z.id: z for z in zones}
    since = timedelta(seconds=max(every_s, 10) * 2)  # the exit's two outside fixes
    flaps = [(zid, a.at, b.at) for zid, evs in by_zone.items() for a, b in zip(evs, evs[1:], strict=False)
             if a.reason == "outside_margin" and b.kind.value == "enter" and b.at - a.at < FLAP
             and not really_left(where[zid], original, since, a, b)]
    assert flaps == []
    assert len(pause_ids) >= (0 if trace.startswith("senart") else 2)  # the ride has no 5-minute stop
    for zid in pause_ids:
        assert {"enter", "dwell"} <= {e.kind.value for e in by_zone.get(zid, [])}, zid
    assert sum(1 for e in events if e.kind.value == "enter") >= 5  # the route zones are visited
