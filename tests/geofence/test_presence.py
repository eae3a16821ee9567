"""The pure presence state machine on constructed tracks (no database, no index, no clock)."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.fixes import LocationFix
from geofence.policy import FencePolicy, policy_for_zone
from geofence.presence import Presence, PresenceState, adopt, close, leaves_outside_alone, step, sweep
from tests.geofence.tracks import STORE, T0, circle_distance, fix, jitter

RADIUS_M = 50.0
POLICY = FencePolicy()


def run(fixes: list[LocationFix], *, radius_m: float = RADIUS_M, policy: FencePolicy = POLICY,
        presence: Presence | None = None, speed: bool = False):
    p = presence or Presence("dev-1", "store")
    events, states = [], []
    prev = None
    for f in fixes:
        implied = None
        if speed and prev is not None:
            implied = ((f.lat - prev.lat) ** 2 + (f.lng - prev.lng) ** 2) ** 0.5 * 111_000 / max(
                1.0, (f.recorded_at - prev.recorded_at).total_seconds())
        p, new = step(p, f, circle_distance(STORE, radius_m, f.lat, f.lng), policy, speed_mps=implied)
        events.extend(new)
        states.append(p.state)
        prev = f
    return p, events, states


def kinds(events) -> list[str]:
    return [e.kind.value for e in events]


def test_walking_past_a_store_without_going_in_fires_nothing():
    # a pavement 70 m north of the centre, 20 m outside the 50 m zone, walked at 1.4 m/s
    track = [fix(70, -200 + 1.4 * 5 * i, 5 * i, accuracy_m=15) for i in range(60)]
    p, events, _ = run(track)
    assert events == []
    assert p.state is PresenceState.OUTSIDE


@pytest.mark.parametrize("radius_m", [50.0, 400.0])
def test_standing_at_the_door_with_30m_jitter_has_no_spurious_transition(radius_m):
    rng = random.Random(7)
    walk_in = [fix(0, 0, 0), fix(0, 5, 10)]  # well inside: one genuine enter
    door = []
    for i in range(400):  # ~33 minutes at the door (on the boundary), fixes every 5 s
        dn, de = jitter(rng, 30.0)
        door.append(fix(radius_m + dn, de, 20 + 5 * i, accuracy_m=rng.uniform(8, 30)))
    _, events, states = run(walk_in + door, radius_m=radius_m)
    assert kinds(events) == ["enter", "dwell"]
    assert PresenceState.EXITING in states  # the pending exit is visible, and never confirmed


def test_standing_outside_at_the_door_enters_at_most_once():
    rng = random.Random(11)
    track = []
    for i in range(400):
        dn, de = jitter(rng, 30.0)
        track.append(fix(RADIUS_M + 5 + dn, de, 5 * i, accuracy_m=rng.uniform(15, 30)))
    _, events, _ = run(track)
    assert kinds(events).count("exit") == 0
    assert kinds(events).count("enter") <= 1


def test_driving_through_a_walking_zone_does_not_enter():
    walk_policy = policy_for_zone(POLICY, None, size_m=RADIUS_M, profile="walk")
    track = [fix(0, -300 + 14 * 5 * i, 5 * i, speed_mps=14.0) for i in range(10)]
    _, events, _ = run(track, policy=walk_policy)
    assert events == []


def test_driving_through_a_zone_without_profile_enters_and_exits_without_dwell():
    track = [fix(0, -300 + 14 * 5 * i, 5 * i, speed_mps=14.0) for i in range(10)]
    _, events, _ = run(track)
    assert kinds(events) == ["enter", "exit"]
    assert events[0].visit_id == events[1].visit_id


def test_dwell_fires_from_fix_time_not_wall_clock():
    track = [fix(0, 0, 30 * i) for i in range(12)]  # 5.5 minutes inside
    _, events, _ = run(track)
    assert kinds(events) == ["enter", "dwell"]
    assert events[1].at == T0 + timedelta(seconds=300)
    assert events[1].reason == "dwell_after_fix"


def test_leaving_exits_after_two_outside_fixes_clear_of_the_margin():
    inside = [fix(0, 0, 0), fix(0, 10, 30)]
    out = [fix(0, 120, 60), fix(0, 200, 90), fix(0, 300, 120)]
    p, events, states = run(inside + out)
    assert kinds(events) == ["enter", "exit"]
    assert events[1].at == T0 + timedelta(seconds=90)
    assert events[1].reason == "outside_margin"
    assert states[2] is PresenceState.EXITING
    assert p.state is PresenceState.OUTSIDE


def test_one_wild_fix_never_exits():
    track = [fix(0, 0, 0), fix(0, 0, 30), fix(0, 2000, 60, accuracy_m=20), fix(0, 0, 90), fix(0, 0, 120)]
    _, events, states = run(track)
    assert kinds(events) == ["enter"]
    assert states[-1] is PresenceState.INSIDE


def test_a_fix_too_imprecise_for_the_zone_causes_no_transition():
    track = [fix(0, 0, 0, accuracy_m=500)]
    p, events, _ = run(track, policy=policy_for_zone(POLICY, None, size_m=RADIUS_M))
    assert events == []
    assert p.state is PresenceState.OUTSIDE
    assert p.last_fix_at == T0


def test_going_silent_inside_dwells_then_exits_on_the_sweep():
    p, events, _ = run([fix(0, 0, 0), fix(0, 3, 20), fix(0, 3, 60)])
    assert kinds(events) == ["enter"]
    p, swept = sweep(p, T0 + timedelta(seconds=200), POLICY)
    assert swept == ()
    p, swept = sweep(p, T0 + timedelta(minutes=6), POLICY)
    assert kinds(swept) == ["dwell"] and swept[0].at == T0 + timedelta(seconds=300)
    assert swept[0].reason == "dwell_timer"
    p, swept = sweep(p, T0 + timedelta(minutes=40), POLICY)
    assert kinds(swept) == ["exit"]
    assert swept[0].reason == "inferred_silence"
    assert swept[0].at == T0 + timedelta(seconds=60) + POLICY.silence_exit_after
    assert p.state is PresenceState.OUTSIDE


def test_a_late_sweep_fires_dwell_and_exit_in_order():
    p, _, _ = run([fix(0, 0, 0), fix(0, 0, 90)])
    _, swept = sweep(p, T0 + timedelta(hours=3), POLICY)
    assert kinds(swept) == ["dwell", "exit"]
    assert swept[0].visit_id == swept[1].visit_id


@pytest.mark.parametrize("seen_s", [0, 30, 59])
def test_a_timer_dwell_needs_the_device_seen_a_while_after_its_enter(seen_s):
    """One fix (or fixes within ``dwell_evidence`` of the enter) says nothing of a stay: no timer dwell,
    and the silence exit still closes the visit."""
    p, _, _ = run([fix(0, 0, 0), fix(0, 0, seen_s)] if seen_s else [fix(0, 0, 0)])
    p, swept = sweep(p, T0 + timedelta(minutes=10), POLICY)
    assert swept == () and p.state is PresenceState.INSIDE
    _, swept = sweep(p, T0 + timedelta(hours=3), POLICY)
    assert kinds(swept) == ["exit"] and swept[0].reason == "inferred_silence"
    _, swept = sweep(run([fix(0, 0, 0), fix(0, 0, 60)])[0], T0 + timedelta(minutes=10), POLICY)
    assert kinds(swept) == ["dwell"]


def test_a_late_fix_cannot_step_a_presence_before_a_transition_the_sweep_fired():
    p, _, _ = run([fix(0, 0, 0), fix(0, 0, 60)])
    dwelled, swept = sweep(p, T0 + timedelta(minutes=6), POLICY)
    assert kinds(swept) == ["dwell"]
    for t_s in (120, 200, 300):  # recorded after the last fix, not after the timer dwell
        f = fix(0, 900, t_s)
        assert step(dwelled, f, circle_distance(STORE, RADIUS_M, f.lat, f.lng), POLICY) == (dwelled, ())
    f = fix(0, 900, 310)
    assert step(dwelled, f, circle_distance(STORE, RADIUS_M, f.lat, f.lng), POLICY)[0].state is (
        PresenceState.EXITING)
    closed, swept = sweep(dwelled, T0 + timedelta(hours=1), POLICY)
    assert kinds(swept) == ["exit"] and closed.last_fix_at == swept[0].at  # later fixes are late for it


def test_out_of_order_and_duplicate_fixes_never_move_presence_backwards():
    p, events, _ = run([fix(0, 0, 0), fix(0, 0, 60)])
    assert kinds(events) == ["enter"]
    late_outside = fix(0, 500, 30)  # recorded between the two, far outside
    same_again = fix(0, 500, 60)
    for f in (late_outside, same_again, late_outside):
        p2, new = step(p, f, circle_distance(STORE, RADIUS_M, f.lat, f.lng), POLICY)
        assert new == () and p2 == p


def test_enter_confirmation_shows_the_pending_state():
    policy = FencePolicy(enter_confirm_fixes=2)
    _, events, states = run([fix(0, 0, 0), fix(0, 0, 10)], policy=policy)
    assert states == [PresenceState.ENTERING, PresenceState.INSIDE]
    assert kinds(events) == ["enter"] and events[0].reason == "confirmed"
    _, events, states = run([fix(0, 0, 0), fix(0, 300, 10)], policy=policy)
    assert states == [PresenceState.ENTERING, PresenceState.OUTSIDE] and events == []


def test_a_stop_confirms_a_pending_enter():
    _, events, _ = run([fix(0, 0, 0, speed_mps=0.2)], policy=FencePolicy(enter_confirm_fixes=3))
    assert kinds(events) == ["enter"] and events[0].reason == "stopped"


def test_zone_removed_closes_an_open_visit_with_an_exit():
    p, events, _ = run([fix(0, 0, 0)])
    closed, ev = close(p, T0 + timedelta(minutes=1))
    assert kinds(ev) == ["exit"] and ev[0].reason == "zone_removed"
    assert ev[0].visit_id == events[0].visit_id
    assert closed.state is PresenceState.OUTSIDE


def test_zone_created_around_a_device_already_inside_fires_nothing():
    last = fix(0, 0, 0)
    adopted = adopt("dev-1", "store", last, circle_distance(STORE, RADIUS_M, last.lat, last.lng), POLICY)
    assert adopted is not None and adopted.state is PresenceState.INSIDE
    track = [fix(0, 0, 30 * i) for i in range(1, 20)] + [fix(0, 400, 700), fix(0, 500, 730)]
    p, events, _ = run(track, presence=adopted)
    assert events == []
    assert p.state is PresenceState.OUTSIDE
    _, swept = sweep(adopted, T0 + timedelta(hours=2), POLICY)
    assert swept == ()


def test_events_carry_a_position_rounded_to_about_100_m():
    _, events, _ = run([fix(3.3, 4.4, 0)])
    ev = events[0]
    assert ev.lat == round(ev.lat, 3) and ev.lng == round(ev.lng, 3)
    assert abs(ev.lat - STORE[0]) < 0.001


@settings(max_examples=300, deadline=None)
@given(
    accuracy=st.floats(0.5, 400.0), distance=st.floats(-500.0, 500.0), ratio=st.floats(0.0, 2.0),
    max_accuracy=st.floats(5.0, 300.0), confirm=st.integers(1, 3),
    speed=st.one_of(st.none(), st.floats(0.0, 60.0)),
)
def test_leaves_outside_alone_says_exactly_when_a_fresh_presence_stays_outside(
    accuracy, distance, ratio, max_accuracy, confirm, speed
):
    """The ingest skips the zone hits this lets go: stepping them would keep nothing and fire nothing."""
    policy = FencePolicy(max_accuracy_m=max_accuracy, enter_depth_ratio=ratio, enter_confirm_fixes=confirm)
    f = LocationFix("dev-1", STORE[0], STORE[1], accuracy, T0, speed_mps=speed)
    new, events = step(Presence("dev-1", "z"), f, distance, policy)
    if leaves_outside_alone(f, distance, policy):
        assert new.state is PresenceState.OUTSIDE and events == ()
    elif speed is None or speed <= (policy.max_enter_speed_mps or math.inf):
        assert new.state is not PresenceState.OUTSIDE  # it may enter: the ingest must step it


SPIKY = FencePolicy(spike_hold_m=300.0)


def run_with_previous(fixes, policy=SPIKY, radius_m=RADIUS_M, center=STORE):
    """``run`` with the previous fix passed as the ingest passes it (for the spike hold)."""
    p, events, states, prev = Presence("dev-1", "store"), [], [], None
    for f in fixes:
        d = circle_distance(center, radius_m, f.lat, f.lng)
        p, new = step(p, f, d, policy, previous=None if prev is None else (prev.lat, prev.lng))
        events.extend(new)
        states.append(p.state)
        prev = f
    return p, events, states


def test_a_lone_spike_into_a_zone_that_holds_spikes_enters_nothing():
    # a walk 1 km west of the store, 30 s a fix; one fix jumps into the store and the next is back
    walk = [fix(0, -1000 + 1.5 * 30 * i, 30 * i) for i in range(10)]
    spiked = walk[:5] + [fix(0, 0, 150)] + walk[6:]
    _, events, states = run_with_previous(spiked)
    assert events == [] and states[5] is PresenceState.HOLDING and states[6] is PresenceState.OUTSIDE
    _, events, _ = run_with_previous(spiked, policy=POLICY)  # without the hold: a visit of one fix
    assert kinds(events) == ["enter", "exit"]


def test_a_fast_arrival_enters_one_fix_later_stamped_at_its_own_fix():
    drive = [fix(0, -1800 + 450 * i, 30 * i) for i in range(5)]  # 15 m/s, into the store at 120 s
    drive += [fix(0, 5, 150), fix(0, 3, 180)]  # and stays
    _, events, states = run_with_previous(drive)
    assert states[4] is PresenceState.HOLDING
    assert kinds(events) == ["enter"] and events[0].at == T0 + timedelta(seconds=120)
    assert events[0].reason == "held" and states[-1] is PresenceState.INSIDE


def test_a_held_enter_with_no_next_fix_is_let_go_by_the_sweep():
    drive = [fix(0, -900, 0), fix(0, -450, 30), fix(0, 0, 60)]
    p, events, _ = run_with_previous(drive)
    assert events == [] and p.state is PresenceState.HOLDING
    p2, swept = sweep(p, T0 + timedelta(seconds=60 + 119), SPIKY)
    assert swept == () and p2 is p
    p, swept = sweep(p, T0 + timedelta(seconds=60 + 120), SPIKY)
    assert kinds(swept) == ["enter"] and swept[0].at == T0 + timedelta(seconds=60)
    assert swept[0].reason == "held" and p.state is PresenceState.INSIDE
    _, swept = sweep(p, T0 + timedelta(hours=1), SPIKY)
    assert kinds(swept) == ["exit"]  # no timer dwell: nothing was seen after the held fix


def test_the_hold_waits_only_for_fixes_far_from_the_one_before():
    walk_in = [fix(0, -200 + 40 * i, 30 * i) for i in range(6)]  # 1.3 m/s: never 300 m in one fix
    _, events, states = run_with_previous(walk_in)
    assert PresenceState.HOLDING not in states and kinds(events) == ["enter"]
    cold = [fix(0, 0, 0)]  # the device's previous fix unknown (a cold cache): no hold
    _, events, _ = run_with_previous(cold)
    assert kinds(events) == ["enter"]


@settings(max_examples=200, deadline=None)
@given(
    out_m=st.floats(0.0, 3000.0), back_m=st.floats(0.0, 3000.0), bearing=st.floats(0.0, 360.0),
)
def test_is_spike_needs_both_neighbours_far_and_close_to_each_other(out_m, back_m, bearing):
    from geofence.fixes import distance_m
    from geofence.presence import is_spike
    from tests.geofence.tracks import offset

    before = STORE
    held = offset(*STORE, 0, out_m)
    rad = math.radians(bearing)
    after = offset(*held, back_m * math.cos(rad), back_m * math.sin(rad))
    a, b = distance_m(*before, *held), distance_m(*held, *after)
    c = distance_m(*before, *after)
    assert is_spike(before, held, after, 300.0) == (min(a, b) >= 300.0 and c <= min(a, b) / 3)
    if is_spike(before, held, after, 300.0):
        assert a >= 300 and b >= 300 and c < a and c < b
