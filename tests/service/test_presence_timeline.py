"""Fixes, late batches and the sweep on one timeline, through the service (real database, real index):
late fixes never reopen a visit before a transition already fired, and a timer dwell needs evidence."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.service.runtime import bootstrap
from geofence.traces import read_trace_gpx
from tests.geofence.tracks import STORE
from zones.model import Circle, Zone

NOON = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)
SHOP = Zone("shop", "Shop", Circle(*STORE, 50), profile="walk")


def at_centre(t: datetime, device_id: str = "dev-1") -> LocationFix:
    return LocationFix(device_id, STORE[0], STORE[1], 10.0, t)


def every_10_s(start: datetime, end: datetime) -> list[LocationFix]:
    n = int((end - start).total_seconds()) // 10 + 1
    return [at_centre(start + timedelta(seconds=10 * i)) for i in range(n)]


@pytest.fixture
def service(settings, engine):
    runtime = bootstrap(settings, engine)
    runtime.geofence.location_consent = None
    svc = runtime.geofence
    svc.save_zones([SHOP], at=NOON - timedelta(days=1))
    return svc


def live(service, arrivals: Sequence[tuple[datetime, list[LocationFix]]], until: datetime,
         sweep_every: timedelta = timedelta(seconds=60)) -> list[ZoneEvent]:
    """Each batch ingested at its arrival time, the sweep at every whole ``sweep_every`` in between (as
    the scheduler runs it); events in the order they were emitted."""
    events: list[ZoneEvent] = []
    pending = sorted(arrivals, key=lambda a: a[0])
    tick = NOON
    while tick <= until:
        while pending and pending[0][0] <= tick:
            arrived, batch = pending.pop(0)
            events += service.ingest(batch, at=arrived).events
        events += service.sweep(tick)
        tick += sweep_every
    return events


def timeline(events: Iterable[ZoneEvent]) -> list[tuple[str, str, str]]:
    return [(e.kind.value, e.at.strftime("%H:%M:%S"), e.reason) for e in events]


def assert_visits_never_overlap(events: Sequence[ZoneEvent]) -> None:
    """Per device and zone, in emission order: no event stamped before one already emitted, and every
    visit closed before the next one opens."""
    by_pair: dict[tuple[str, str], list[ZoneEvent]] = defaultdict(list)
    for e in events:
        by_pair[(e.device_id, e.zone_id)].append(e)
    for pair, evs in by_pair.items():
        times = [e.at for e in evs]
        assert times == sorted(times), f"{pair}: an event stamped before one already emitted"
        open_visit = None
        for e in evs:
            if e.kind.value == "enter":
                assert open_visit is None, f"{pair}: a visit opened inside another"
                open_visit = e.visit_id
            else:
                assert e.visit_id == open_visit, f"{pair}: {e.kind.value} outside its visit"
                if e.kind.value == "exit":
                    open_visit = None


def test_a_late_batch_after_a_silence_exit_starts_a_new_visit_after_that_exit(service):
    """The issue's case: fixes every 10 s 12:00:00-12:04:50, each posted as recorded; at 12:36:00 one
    batch holds the fixes of 12:05:00-12:35:50. The silence exit (12:34:00: the head's last fix, 12:04:00,
    + 30 min) has been emitted; the late fixes up to it change nothing, the visit resumes at 12:34:10."""
    posted = [(f.recorded_at, [f]) for f in every_10_s(NOON, NOON + timedelta(seconds=290))]
    late = every_10_s(NOON + timedelta(minutes=5), NOON + timedelta(minutes=35, seconds=50))
    events = live(service, [*posted, (NOON + timedelta(minutes=36), late)], until=NOON + timedelta(hours=2))
    assert timeline(events) == [
        ("enter", "12:00:00", "inside"),
        ("dwell", "12:05:00", "dwell_timer"),
        ("exit", "12:34:00", "inferred_silence"),
        ("enter", "12:34:10", "inside"),
        ("dwell", "12:39:10", "dwell_timer"),
        ("exit", "13:05:50", "inferred_silence"),
    ]
    assert_visits_never_overlap(events)


def test_late_fixes_outside_cannot_end_a_visit_before_its_timer_dwell(service):
    """Fixes inside 12:00:00-12:02:00, the timer dwell at 12:05:00, then a late batch that left the zone
    at 12:03:00: its exit may not be stamped before the dwell already emitted."""
    far = 500 / 111_195.0  # degrees of latitude: 500 m north
    inside = [(f.recorded_at, [f]) for f in every_10_s(NOON, NOON + timedelta(minutes=2))]
    away = [LocationFix("dev-1", STORE[0] + far, STORE[1], 10.0, NOON + timedelta(minutes=3, seconds=10 * i))
            for i in range(0, 60)]  # 12:03:00-12:12:50
    events = live(service, [*inside, (NOON + timedelta(minutes=13), away)], until=NOON + timedelta(hours=1))
    assert timeline(events) == [
        ("enter", "12:00:00", "inside"),
        ("dwell", "12:05:00", "dwell_timer"),
        ("exit", "12:05:20", "outside_margin"),  # the second outside fix after the dwell
    ]
    assert_visits_never_overlap(events)


def test_a_gpx_of_a_single_instant_enters_and_leaves_without_a_dwell(service):
    """Every point carries the same time: one accepted fix, the rest duplicates. Nothing says the device
    stayed, so no timer dwell; the silence exit still closes the visit."""
    points = "\n".join(
        f'<trkpt lat="{STORE[0] + i * 1e-5}" lon="{STORE[1]}"><time>2026-03-14T12:00:00Z</time></trkpt>'
        for i in range(5)
    )
    fixes, errors = read_trace_gpx(f"<gpx><trk><trkseg>\n{points}\n</trkseg></trk></gpx>", device_id="dev-1")
    assert errors == [] and len(fixes) == 5
    out = service.ingest(fixes, at=NOON)
    assert [r.status for r in out.results].count("accepted") == 1
    events = out.events + live(service, [], until=NOON + timedelta(hours=1))
    assert timeline(events) == [("enter", "12:00:00", "inside"), ("exit", "12:30:00", "inferred_silence")]


def test_a_device_seen_a_heartbeat_after_its_enter_dwells_by_timer(service):
    """The evidence a timer dwell needs: the device seen inside at least ``dwell_evidence`` (60 s, one
    heartbeat of the stored last fix) after its enter."""
    seen = every_10_s(NOON, NOON + timedelta(seconds=60))
    events = live(service, [(f.recorded_at, [f]) for f in seen], until=NOON + timedelta(hours=1))
    assert timeline(events) == [
        ("enter", "12:00:00", "inside"), ("dwell", "12:05:00", "dwell_timer"),
        ("exit", "12:31:00", "inferred_silence"),
    ]


def test_sweep_chunks_never_split_a_devices_presences():
    """A silence exit moves the device's last fix: a presence of it left to a later chunk would count its
    silence from there. A read cut at its limit leaves its last device whole to the next sweep."""
    from geofence.presence import Presence
    from geofence.service.wiring.geofence import _whole_devices

    due = [Presence(d, f"z{i}") for d, n in (("a", 3), ("b", 2), ("c", 4)) for i in range(n)]
    chunks = list(_whole_devices(due, 2, complete=True))
    assert [[p.device_id for p in c] for c in chunks] == [["a", "a", "a"], ["b", "b"], ["c"] * 4]
    cut = list(_whole_devices(due, 2, complete=False))
    assert [[p.device_id for p in c] for c in cut] == [["a", "a", "a"], ["b", "b"]]
