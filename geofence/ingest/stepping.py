"""Step 3 of the ingest, for one device: every candidate zone stepped with each of its fixes in time order
(the pure ``presence.step``), and what of it must be stored.

Both lanes step a device through ``step_device``; the reference lane steps every candidate zone, the
accelerated lane also leaves out what cannot change (``skip``: steady visits, hits too shallow to enter).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix, distance_m
from geofence.ingest.screening import Undo
from geofence.ingest.zone_policies import ZoneLookup
from geofence.policy import FencePolicy
from geofence.presence import (
    INSIDE_STATES,
    Presence,
    leaves_outside_alone,
    only_seen_later,
    stays_inside,
    step,
)
from geofence.store import StoredDevice

CENTRE_INSIDE = -1e-3  # a signed distance standing for "the index found the centre inside"
# A stored presence whose only change is a newer ``last_fix_at`` is re-written only once the stored one is
# this old (write coalescing: a device standing in 10 zones would otherwise re-write 10 rows per fix).
# Far below ``silence_exit_after``; see docs/presence.md for what it costs.
HEARTBEAT = timedelta(seconds=60)


class SteadyZones(Protocol):
    """What ``step_device`` may leave out for a device (``geofence.ingest.steady.Summary`` is one)."""

    @property
    def steady(self) -> frozenset[str]: ...  # zones it is steadily inside of

    @property
    def other(self) -> tuple[str, ...]: ...  # its other presences' zones

    @property
    def until(self) -> datetime: ...  # until the first dwell due among the steady ones


def step_device(
    fixes: Sequence[LocationFix], positions: list[int], before: Undo, hits: Mapping[int, list[str]],
    current: dict[str, Presence], stored: Mapping[str, Presence], events: list[ZoneEvent], *,
    index: ZoneLookup, policy_for: Callable[[str], FencePolicy], skip: bool = False,
    summary: SteadyZones | None = None,
) -> None:
    """Step every candidate zone of one device (its open visits and the zones that contain a fix) with
    each of its fixes (``positions``, in time order; ``hits``: the zones that contain each one), updating
    ``current`` (zone -> presence, from ``stored``) and appending the events fired.

    With ``skip``, steady visits are left out: a stored, unchanged presence inside (not dwelling yet and
    not due to) or dwelling, whose zone contains the fix centre, would only get a newer ``last_fix_at``,
    which the device's head carries. With the device's ``summary`` (and no dwell due) they are left out
    with set operations; otherwise each zone is checked with ``stays_inside``. Skipping gives the same
    rows and events as stepping (the equivalence tests of ``tests/geofence/test_ingest.py``).
    """
    prev_pos = (before[0], before[1], before[3]) if before else None
    touched: set[str] = set()  # zones whose presence this batch has changed
    for i in positions:
        fix = fixes[i]
        speed = None  # best estimate (centre to centre) for the zones' enter speed limit
        if prev_pos is not None:
            dt_s = (fix.recorded_at - prev_pos[2]).total_seconds()
            if dt_s > 0:
                speed = distance_m(prev_pos[0], prev_pos[1], fix.lat, fix.lng) / dt_s
        previous = None if prev_pos is None else (prev_pos[0], prev_pos[1])  # for the spike hold
        prev_pos = (fix.lat, fix.lng, fix.recorded_at)
        inside = hits.get(i, ())
        at = fix.recorded_at
        inside_set: Collection[str]
        if summary is not None and at < summary.until:
            # steady zones that still hold the fix are left out; the others, and any open zone the
            # fix left, are stepped
            inside_set = set(inside)
            zone_ids = (inside_set ^ summary.steady).union(summary.other, touched)
        else:
            inside_set = inside
            zone_ids = {z for z, p in current.items() if p.is_open}
            zone_ids.update(inside)
        for zone_id in zone_ids:
            if zone_id not in index:
                continue  # removed: its presences are closed by the zone's removal
            p = current.get(zone_id)
            policy = policy_for(zone_id)
            if p is None:  # no presence: only a fix deep enough for its accuracy can start one
                d = index.signed_distance_m(zone_id, fix.lat, fix.lng, zone_id in inside_set)
                if skip and leaves_outside_alone(fix, d, policy):
                    continue  # a hit too shallow (or too imprecise) to start an enter
                p = Presence(fix.device_id, zone_id)
            elif not p.is_open and zone_id not in inside_set:
                continue  # an outside row the fix is not in: nothing to step
            elif skip and p is stored.get(zone_id) and zone_id in inside and stays_inside(
                p, at, policy.dwell_after
            ):
                continue  # a steady visit: nothing but the device's last fix would change
            elif p.state in INSIDE_STATES and zone_id in inside:
                # an open visit only asks whether the centre is inside (the sign of the distance),
                # and the index just said it is (it agrees with signed_distance_m's sign exactly)
                d = CENTRE_INSIDE
            else:
                d = index.signed_distance_m(zone_id, fix.lat, fix.lng, zone_id in inside_set)
            new, fired = step(p, fix, d, policy, speed_mps=speed, previous=previous)
            if new is not p:
                current[zone_id] = new
                touched.add(zone_id)
            events.extend(fired)


def changes_of(
    before: Mapping[str, Presence], current: Mapping[str, Presence]
) -> tuple[list[Presence], bool]:
    """The presences to write after stepping (not those whose only change is a later last fix: the head
    carries it, see ``geofence.store.StoredDevice``), and whether a visit is open."""
    changed: list[Presence] = []
    is_open = False
    for zone_id, p in current.items():
        if p.is_open:
            is_open = True
        old = before.get(zone_id)
        if old is p or (old is None and not p.is_open):
            continue
        if old is not None and only_seen_later(old, p):
            continue
        changed.append(p)
    return changed, is_open


def head_due(device: StoredDevice | None, last_at: datetime, heartbeat: timedelta) -> bool:
    """Whether a device's head, untouched otherwise, is re-written for this last fix: once its stored
    last fix is a heartbeat old (write coalescing)."""
    stored_at = None if device is None else device.last_fix_at
    return stored_at is None or last_at - stored_at >= heartbeat
