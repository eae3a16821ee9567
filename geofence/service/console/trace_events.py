"""Zone events a recorded trace (GPX or CSV) gives in some zones, by the presence core, writing nothing:
what the dry run of a campaign replays when the marketer uploads a trace instead of using recorded
events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from geofence.events import ZoneEvent
from geofence.policy import FencePolicy, policy_for_zone
from geofence.presence import Presence, step, sweep
from geofence.traces import read_trace
from zones.geometry import signed_distance_m
from zones.model import Circle, Zone

MAX_FIXES = 20_000


def zones_of_trigger(zones: Iterable[Zone], trigger: dict[str, Any]) -> list[Zone]:
    """The zones a campaign's trigger (its JSON form) names by id or by tag."""
    ids, tags = set(trigger.get("zone_ids") or ()), set(trigger.get("zone_tags") or ())
    return [z for z in zones if z.id in ids or z.tags & tags]


def trace_events(
    text: str, *, name: str, zones: list[Zone], base: FencePolicy, device_id: str = "trace"
) -> tuple[list[ZoneEvent], list[str]]:
    """Step every fix of the trace through each zone's presence; returns (events by time, problems)."""
    fixes, errors = read_trace(text, name=name, device_id=device_id)
    problems = [f"line {e.line}: {e.reason}" for e in errors]
    if len(fixes) > MAX_FIXES:
        problems.append(f"only the first {MAX_FIXES} of {len(fixes)} points were replayed")
        fixes = fixes[:MAX_FIXES]
    fixes.sort(key=lambda f: f.recorded_at)
    events: list[ZoneEvent] = []
    for zone in zones:
        size_m = zone.geometry.radius_m if isinstance(zone.geometry, Circle) else None
        policy = policy_for_zone(base, zone.fence, size_m=size_m, profile=zone.profile)
        presence = Presence(device_id=device_id, zone_id=zone.id)
        for fix in fixes:
            presence, fired = step(presence, fix, signed_distance_m(zone, fix.lat, fix.lng), policy)
            events.extend(fired)
        if fixes:  # let the dwell and silence timers of the trace's end run out
            presence, fired = sweep(presence, fixes[-1].recorded_at + timedelta(hours=1), policy)
            events.extend(fired)
    events.sort(key=lambda e: e.at)
    return events, problems


def as_dry_run_events(events: list[ZoneEvent]) -> list[dict[str, Any]]:
    """The events in the shape ``POST /v1/campaigns/{id}/dry-run`` takes."""
    return [
        {"id": e.id, "zone_id": e.zone_id, "device_id": e.device_id, "kind": e.kind.value,
         "at": e.at.isoformat(), "visit_id": e.visit_id, "lat": e.lat, "lng": e.lng}
        for e in events
    ]
