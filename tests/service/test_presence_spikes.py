"""A lone GPS spike on a real trace (Vincennes run, tests/data, thinned to a fix per 30 s) through the
service, replayed as live: a zone that holds spikes is not entered; one that does not is, for a minute."""

from __future__ import annotations

import gzip
from datetime import timedelta
from pathlib import Path

import pytest

from geofence.fixes import LocationFix
from geofence.service.runtime import bootstrap
from geofence.traces import read_trace_gpx, thin
from tests.geofence.tracks import offset
from zones.model import Circle, FenceSettings, Zone

DATA = Path(__file__).resolve().parents[1] / "data"


def spiked_trace() -> tuple[list[LocationFix], int]:
    text = gzip.decompress((DATA / "vincennes-2018-01-31.gpx.gz").read_bytes()).decode()
    fixes = thin(read_trace_gpx(text, device_id="runner")[0], timedelta(seconds=30))
    fixes, k = fixes[40:80], 20  # 20 minutes of it; one fix moved 1,000 m east (~32 m/s from its
    # neighbours: plausible for a car)
    lat, lng = offset(fixes[k].lat, fixes[k].lng, 0, 1000)
    spike = LocationFix("runner", lat, lng, fixes[k].accuracy_m, fixes[k].recorded_at)
    return [*fixes[:k], spike, *fixes[k + 1 :]], k


def replay(settings, engine, fence: FenceSettings | None) -> list[tuple[str, str]]:
    fixes, k = spiked_trace()
    runtime = bootstrap(settings, engine)
    runtime.geofence.location_consent = None
    service = runtime.geofence
    drive = Zone("drive", "Drive-through", Circle(fixes[k].lat, fixes[k].lng, 309.0), profile="drive",
                 fence=fence)
    service.save_zones([drive], at=fixes[0].recorded_at)
    fired = [e for _, events in service.replay(fixes, sweep_every=timedelta(seconds=60)) for e in events]
    return [(e.kind.value, e.reason) for e in fired]


def test_a_lone_spike_does_not_enter_a_zone_that_holds_spikes(settings, engine):
    assert replay(settings, engine, FenceSettings(spike_hold_m=300.0)) == []


def test_without_the_hold_the_same_spike_enters_and_exits(settings, engine):
    assert replay(settings, engine, None) == [("enter", "inside"), ("exit", "outside_margin")]


@pytest.mark.parametrize("hold_m", [300.0, 0.0])
def test_the_global_default_holds_spikes_in_every_zone(sqlite_engine, settings, hold_m):
    held = settings.model_copy(update={"fence": settings.fence.model_copy(update={"spike_hold_m": hold_m})})
    expected = [] if hold_m else [("enter", "inside"), ("exit", "outside_margin")]
    assert replay(held, sqlite_engine, None) == expected
