"""The presence state machine of one device in one zone. Pure: no I/O, no wall clock.

States (visible, persisted): ``outside -> entering (pending) -> inside -> dwelling``, and from inside or
dwelling ``exiting (pending) -> outside``; in a zone whose policy holds spikes, ``outside -> holding ->
inside`` (or back ``outside``). Only ENTER, DWELL and EXIT are events.

Every decision is taken on the fix's own time and on the fix's *signed distance* to the zone (metres,
negative inside, from ``zones.ZoneIndex.signed_distance_m``) combined with its accuracy:

- enter: the centre is at least ``enter_depth_ratio * accuracy`` inside (the accuracy disc is mostly
  inside), the accuracy is good enough for this zone, the device is not moving faster than the zone's
  profile allows, and this held for ``enter_confirm_fixes`` fixes (or the fix reports a stop);
- exit: ``exit_after_outside_fixes`` consecutive fixes with the centre outside, the last of which has its
  whole accuracy disc clear of the zone by ``exit_margin_m`` (hysteresis). A fix back inside resets;
- dwell: ``dwell_after`` of fix time since the enter, on a fix or from the sweep (``sweep``: only for a
  device seen at least ``dwell_evidence`` after its enter);
- silence: no fix for ``silence_exit_after`` while inside -> EXIT ``inferred_silence`` (``sweep``);
- a fix at or before the last one processed changes nothing (late and duplicate fixes never rewind), nor
  does one at or before a transition the sweep fired: no event is ever stamped before another one of
  the same device and zone;
- a fix too imprecise for the zone only refreshes ``last_fix_at`` (it keeps a silent device alive but
  never causes a transition);
- spikes (``spike_hold_m`` > 0): a fix that would enter and lies that far or farther from the device's
  previous fix is *held* until the next fix. If the next one is back near the fix before, outside the
  zone, the held fix was a lone out-and-back spike and is dropped (``is_spike``); otherwise the ENTER
  fires, stamped at the held fix's time. The sweep releases a hold the next fix did not settle within
  ``spike_wait``.

A presence adopted silently (``entered_at is None``: the zone was created around a device already
inside, see ``adopt``) never emits: no enter happened, so there is no visit to dwell in or leave.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum

import msgspec
from msgspec.structs import replace

from geofence.events import TransitionKind, ZoneEvent, round_position
from geofence.fixes import LocationFix
from geofence.fixes import distance_m as metres_between
from geofence.policy import FencePolicy

IdFactory = Callable[[], str]


def new_id() -> str:
    """32 hex digits (the shape of ``uuid4().hex``, at a fraction of its cost: two per enter), time-ordered
    like a UUIDv7: 48 bits of Unix milliseconds, then 80 random bits. Event and visit ids are indexed, and
    ordered ids are inserted at the right edge of their index (a page or two per commit), random ones each
    on a page of its own. The time orders ids only; nothing is decided by it."""
    return (time.time_ns() // 1_000_000).to_bytes(6, "big").hex() + os.urandom(10).hex()


class PresenceState(StrEnum):
    OUTSIDE = "outside"
    ENTERING = "entering"
    HOLDING = "holding"  # an enter held until the next fix says whether its fix was a spike
    INSIDE = "inside"
    DWELLING = "dwelling"
    EXITING = "exiting"


INSIDE_STATES = frozenset({PresenceState.INSIDE, PresenceState.DWELLING, PresenceState.EXITING})


class Presence(msgspec.Struct, frozen=True, gc=False):
    """Where one device stands with one zone. ``version`` is the optimistic-concurrency counter.

    A msgspec ``Struct`` with ``gc=False``: a process caches about a million of these (~10 a device) for
    as long as it runs, and every full collection of the garbage collector visited each one (measured:
    ~0.1 s a collection); they hold no reference that could make a cycle."""

    device_id: str
    zone_id: str
    state: PresenceState = PresenceState.OUTSIDE
    since_at: datetime | None = None  # fix time the current state began
    last_fix_at: datetime | None = None  # last fix stepped against this zone (as stored: of the last change)
    entered_at: datetime | None = None
    visit_id: str | None = None
    pending_fixes: int = 0  # qualifying fixes (entering) or consecutive outside fixes (exiting)
    dwelled: bool = False
    lat: float | None = None  # rounded (~100 m) position of the enter, for later events (holding: of the
    # fix before the held one)
    lng: float | None = None
    version: int = 0

    @property
    def is_open(self) -> bool:
        """Worth keeping: anything but plain outside."""
        return self.state is not PresenceState.OUTSIDE


StepResult = tuple[Presence, tuple[ZoneEvent, ...]]


def stays_inside(p: Presence, at: datetime, dwell_after: timedelta) -> bool:
    """True when a fix at ``at`` with its centre inside the zone changes nothing of ``p`` but its
    ``last_fix_at``: inside with no dwell due yet, or already dwelling (see ``_step_inside``)."""
    if p.state is PresenceState.DWELLING:
        return p.dwelled
    return (
        p.state is PresenceState.INSIDE and not p.dwelled
        and (p.entered_at is None or at - p.entered_at < dwell_after)
    )


def leaves_outside_alone(fix: LocationFix, distance_m: float, policy: FencePolicy) -> bool:
    """True when ``step`` of a device with no presence in the zone (``Presence(device_id, zone_id)``)
    returns a presence still outside and no event, whatever the speed: the fix is too imprecise for the
    zone, its centre is outside, or inside but not deep enough for its accuracy (see ``_step_outside``).
    The ingest skips such zone hits without building a presence."""
    return fix.accuracy_m > policy.max_accuracy_m or distance_m > -policy.enter_depth_ratio * fix.accuracy_m


def only_seen_later(old: Presence, new: Presence) -> bool:
    """True when ``new`` differs from ``old`` by its ``last_fix_at`` alone (no transition, no count)."""
    return (
        new.state is old.state and new.since_at == old.since_at and new.pending_fixes == old.pending_fixes
        and new.entered_at == old.entered_at and new.visit_id == old.visit_id and new.dwelled == old.dwelled
        and new.version == old.version and new.lat == old.lat and new.lng == old.lng
    )


def _seen_at(p: Presence, at: datetime) -> Presence:
    """``replace(p, last_fix_at=at)``, spelled out: it runs for every (fix, zone) pair and
    ``dataclasses.replace`` costs several times a direct construction."""
    return Presence(
        p.device_id, p.zone_id, p.state, p.since_at, at, p.entered_at, p.visit_id, p.pending_fixes,
        p.dwelled, p.lat, p.lng, p.version,
    )


def _event(p: Presence, kind: TransitionKind, at: datetime, reason: str, ids: IdFactory) -> ZoneEvent:
    return ZoneEvent(
        id=ids(), zone_id=p.zone_id, device_id=p.device_id, kind=kind, at=at,
        visit_id=p.visit_id or "", reason=reason, lat=p.lat, lng=p.lng,
    )


def step(
    presence: Presence,
    fix: LocationFix,
    distance_m: float,
    policy: FencePolicy,
    *,
    speed_mps: float | None = None,
    previous: tuple[float, float] | None = None,
    ids: IdFactory = new_id,
) -> StepResult:
    """Advance one presence with one fix.

    Parameters
    ----------
    presence : the current presence (``Presence(device_id, zone_id)`` when none is stored).
    fix : the fix, already checked by ``geofence.fixes.check_fix`` and found plausible.
    distance_m : signed distance from the fix centre to the zone, metres (< 0 inside; ``inf`` far away).
    policy : this zone's policy.
    speed_mps : the device's speed (reported, or implied by its previous fix), for the enter speed limit.
    previous : (lat, lng) of the device's previous accepted fix, when known (the spike hold needs it).
    ids : id factory for events and visits (tests pass a deterministic one).

    Returns
    -------
    The new presence and the events it fired (empty for most fixes).
    """
    at = fix.recorded_at
    if presence.last_fix_at is not None and at <= presence.last_fix_at:
        return presence, ()
    if presence.dwelled and presence.since_at is not None and at <= presence.since_at:
        return presence, ()  # a timer DWELL was fired at ``since_at``: nothing may happen before it
    p = _seen_at(presence, at)
    if fix.accuracy_m > policy.max_accuracy_m:
        return p, ()
    if p.state in INSIDE_STATES:
        return _step_inside(p, fix, distance_m, policy, ids)
    if p.state is PresenceState.HOLDING:
        return _settle_hold(p, fix, distance_m, policy, speed_mps, previous, ids)
    return _step_outside(p, fix, distance_m, policy, speed_mps, ids, previous)


def _step_outside(
    p: Presence, fix: LocationFix, d: float, policy: FencePolicy, speed_mps: float | None, ids: IdFactory,
    previous: tuple[float, float] | None = None,
) -> StepResult:
    at = fix.recorded_at
    speed = fix.speed_mps if fix.speed_mps is not None else speed_mps
    too_fast = policy.max_enter_speed_mps is not None and (speed or 0.0) > policy.max_enter_speed_mps
    if d <= -policy.enter_depth_ratio * fix.accuracy_m and not too_fast:
        count = (p.pending_fixes if p.state is PresenceState.ENTERING else 0) + 1
        stopped = fix.speed_mps is not None and fix.speed_mps <= policy.stop_speed_mps
        if count >= policy.enter_confirm_fixes or stopped:
            if (
                policy.spike_hold_m > 0.0 and previous is not None
                and metres_between(previous[0], previous[1], fix.lat, fix.lng) >= policy.spike_hold_m
            ):  # far from the fix before: wait for the next one to tell a spike from a move
                lat, lng = round_position(*previous)
                return Presence(p.device_id, p.zone_id, PresenceState.HOLDING, since_at=at,
                                last_fix_at=p.last_fix_at, pending_fixes=count, lat=lat, lng=lng,
                                version=p.version), ()
            reason = "inside" if count == 1 and not stopped else ("stopped" if stopped else "confirmed")
            return _enter(p, at, (fix.lat, fix.lng), reason, policy, ids)
        since = p.since_at if p.state is PresenceState.ENTERING else at
        return replace(p, state=PresenceState.ENTERING, since_at=since, pending_fixes=count), ()
    if d > 0 or too_fast:
        return replace(p, state=PresenceState.OUTSIDE, since_at=None, pending_fixes=0), ()
    return p, ()  # inside but not deep enough: neither confirms nor cancels a pending enter


def _enter(
    p: Presence, at: datetime, where: tuple[float, float] | None, reason: str, policy: FencePolicy,
    ids: IdFactory,
) -> StepResult:
    """ENTER at ``at`` (and DWELL at once when ``dwell_after`` is 0); ``where``: the fix's position."""
    lat, lng = round_position(*where) if where is not None else (None, None)
    entered = Presence(  # spelled out: ``dataclasses.replace`` costs several times this
        p.device_id, p.zone_id, PresenceState.INSIDE, since_at=at, last_fix_at=p.last_fix_at,
        entered_at=at, visit_id=ids(), pending_fixes=0, dwelled=False, lat=lat, lng=lng,
        version=p.version,
    )
    events = [_event(entered, TransitionKind.ENTER, at, reason, ids)]
    if policy.dwell_after.total_seconds() <= 0:
        entered = replace(entered, state=PresenceState.DWELLING, dwelled=True)
        events.append(_event(entered, TransitionKind.DWELL, at, "dwell_after_fix", ids))
    return entered, tuple(events)


def is_spike(before: tuple[float, float], held: tuple[float, float], after: tuple[float, float],
             min_m: float) -> bool:
    """True when ``held`` is a lone out-and-back fix: at least ``min_m`` from both its neighbours (lat,
    lng each), which are within a third of that of each other. ``before`` may be rounded to ~100 m (a
    holding presence keeps no finer position), which ``min_m`` of a few hundred metres absorbs."""
    out = metres_between(before[0], before[1], held[0], held[1])
    back = metres_between(held[0], held[1], after[0], after[1])
    jump = min(out, back)
    return jump >= min_m and metres_between(before[0], before[1], after[0], after[1]) <= jump / 3.0


def _settle_hold(
    p: Presence, fix: LocationFix, d: float, policy: FencePolicy, speed_mps: float | None,
    previous: tuple[float, float] | None, ids: IdFactory,
) -> StepResult:
    """The fix after a held one (``previous``, when this process saw it): a spike is dropped and this fix
    is stepped as the first after the device was outside; anything else enters at the held fix's time,
    then steps this fix inside."""
    held_at = p.since_at or fix.recorded_at
    before = (p.lat, p.lng) if p.lat is not None and p.lng is not None else None
    if (
        d > 0 and previous is not None and before is not None
        and is_spike(before, previous, (fix.lat, fix.lng), policy.spike_hold_m)
    ):
        gone = Presence(p.device_id, p.zone_id, PresenceState.OUTSIDE, last_fix_at=p.last_fix_at,
                        version=p.version)
        return _step_outside(gone, fix, d, policy, speed_mps, ids, previous)
    entered, events = _enter(p, held_at, previous, "held", policy, ids)
    entered, more = _step_inside(entered, fix, d, policy, ids)
    return entered, events + more


def _step_inside(p: Presence, fix: LocationFix, d: float, policy: FencePolicy, ids: IdFactory) -> StepResult:
    at = fix.recorded_at
    if d > 0:
        count = (p.pending_fixes if p.state is PresenceState.EXITING else 0) + 1
        clear = d - fix.accuracy_m >= policy.exit_margin_m
        if count >= policy.exit_after_outside_fixes and clear:
            return _exit(p, at, "outside_margin", ids)
        since = p.since_at if p.state is PresenceState.EXITING else at
        return replace(p, state=PresenceState.EXITING, since_at=since, pending_fixes=count), ()
    back = PresenceState.DWELLING if p.dwelled else PresenceState.INSIDE
    if p.state is not back:
        p = replace(p, state=back, since_at=at, pending_fixes=0)
    if not p.dwelled and p.entered_at is not None and at - p.entered_at >= policy.dwell_after:
        p = replace(p, state=PresenceState.DWELLING, since_at=at, dwelled=True)
        return p, (_event(p, TransitionKind.DWELL, at, "dwell_after_fix", ids),)
    return p, ()


def _exit(p: Presence, at: datetime, reason: str, ids: IdFactory) -> StepResult:
    closed = Presence(p.device_id, p.zone_id, PresenceState.OUTSIDE, None, p.last_fix_at, version=p.version)
    if p.entered_at is None:  # adopted silently: there was no visit to close
        return closed, ()
    return closed, (_event(p, TransitionKind.EXIT, at, reason, ids),)


def sweep(presence: Presence, at: datetime, policy: FencePolicy, *, ids: IdFactory = new_id) -> StepResult:
    """Timer transitions for a device that stopped reporting, evaluated at ``at`` (the sweep's time).

    Fires DWELL at ``entered_at + dwell_after`` for a device still inside (no contrary evidence: not
    exiting) that was seen at least ``dwell_evidence`` after its enter (one fix, or fixes of a single
    instant, say nothing of a stay), and EXIT ``inferred_silence`` at ``last_fix_at +
    silence_exit_after``. Both carry the time they became due, not the sweep's time, and a timer
    transition counts as processed up to that time: a fix recorded at or before it, arriving later,
    changes nothing (the DWELL's ``since_at``, the EXIT's ``last_fix_at``, which the store makes the
    device's last fix). A pending enter that went silent is dropped; an enter held for ``spike_wait``
    with no next fix fires, stamped at the held fix's time (with no position: none is kept).
    """
    p = presence
    events: list[ZoneEvent] = []
    last = p.last_fix_at
    if last is None:
        return p, ()
    if p.state is PresenceState.HOLDING and p.since_at is not None and at >= p.since_at + policy.spike_wait:
        p, entered = _enter(p, p.since_at, None, "held", policy, ids)  # no next fix came to tell
        events.extend(entered)
    silent_at = last + policy.silence_exit_after
    if (
        p.state is PresenceState.INSIDE and not p.dwelled and p.entered_at is not None
        and at >= p.entered_at + policy.dwell_after
    ):
        due = p.entered_at + policy.dwell_after
        if due <= silent_at and last - p.entered_at >= policy.dwell_evidence:
            p = replace(p, state=PresenceState.DWELLING, since_at=due, dwelled=True)
            events.append(_event(p, TransitionKind.DWELL, due, "dwell_timer", ids))
    if at >= silent_at:
        if p.state in INSIDE_STATES:
            p, exit_events = _exit(p, silent_at, "inferred_silence", ids)
            if exit_events:  # the device is gone from that time on: its earlier fixes come too late
                p = replace(p, last_fix_at=silent_at)
            events.extend(exit_events)
        elif p.state is PresenceState.ENTERING:
            p = replace(p, state=PresenceState.OUTSIDE, since_at=None, pending_fixes=0)
    return p, tuple(events)


def close(
    presence: Presence, at: datetime, reason: str = "zone_removed", *, ids: IdFactory = new_id
) -> StepResult:
    """Close a presence because its zone went away: EXIT for an announced visit, nothing otherwise."""
    if presence.state in INSIDE_STATES:
        return _exit(presence, at, reason, ids)
    return replace(presence, state=PresenceState.OUTSIDE, since_at=None, pending_fixes=0), ()


def adopt(
    device_id: str, zone_id: str, fix: LocationFix, distance_m: float, policy: FencePolicy
) -> Presence | None:
    """A zone was created around a device: adopt it as silently inside if its last fix is well inside.

    No ENTER fires (the device did not arrive), and the adopted presence never fires DWELL or EXIT.
    """
    if fix.accuracy_m > policy.max_accuracy_m or distance_m > -policy.enter_depth_ratio * fix.accuracy_m:
        return None
    at = fix.recorded_at
    return Presence(device_id, zone_id, PresenceState.INSIDE, since_at=at, last_fix_at=at)


def open_states() -> Iterable[str]:
    """State values stored in the database (outside is the absence of a row)."""
    return [s.value for s in PresenceState if s is not PresenceState.OUTSIDE]
