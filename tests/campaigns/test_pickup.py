"""The click-and-collect state machine (campaigns.pickup): each event once, with the time it happened;
the schedule standing in for a phone that stopped sharing, at an exact instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.pickup import (
    Approach,
    Cancelled,
    Entered,
    Order,
    OrderEventType,
    OrderStatus,
    PickedUp,
    PickupPolicy,
    Seen,
    Tick,
    run,
    step,
    wait_median_s,
)
from campaigns.transactional import transactional_send_at
from tests.geofence.tracks import offset

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
STORE = (48.8443, 2.4467)
POLICY = PickupPolicy(stale_after=timedelta(minutes=10))
WALK_5 = Approach(minutes=5, lat=STORE[0], lng=STORE[1], profile="walk")  # 397 m


def order(**changes) -> Order:
    values = {
        "id": "o1",
        "customer_id": "c1",
        "store_zone_id": "store-1",
        "created_at": T0,
        "ready_at": T0 + timedelta(minutes=20),
        "approach": WALK_5,
    }
    return Order(**{**values, **changes})


def at_m(metres: float, minutes: float, north: bool = True) -> Seen:
    lat, lng = offset(*STORE, metres, 0 if north else 90)
    return Seen(T0 + timedelta(minutes=minutes), lat, lng, 10.0)


def types(events) -> list[str]:
    return [e.type.value for e in events]


def test_approaching_fires_at_the_first_position_within_the_walk_radius_and_once():
    o, events = run(order(), [at_m(900, 1), at_m(420, 2), at_m(380, 3), at_m(200, 4)], POLICY)
    assert types(events) == ["order.approaching"]
    assert events[0].at == T0 + timedelta(minutes=3) and events[0].basis == "location"
    assert 4.5 < events[0].details["eta_minutes"] <= 5.0 and events[0].details["distance_m"] == 380
    assert o.approaching_at == T0 + timedelta(minutes=3)


def test_an_inaccurate_position_says_nothing_about_approaching():
    lat, lng = offset(*STORE, 100, 0)
    _, events = step(order(), Seen(T0, lat, lng, 400.0), POLICY)
    assert events == []


def test_isochrone_approach_tests_the_polygon_not_the_distance():
    # a thin strip north of the store: 600 m north is inside, 100 m east is not
    n_lat, _ = offset(*STORE, 800, 0)
    square = {
        "type": "Polygon",
        "coordinates": [
            [
                [STORE[1] - 0.0005, STORE[0]],
                [STORE[1] + 0.0005, STORE[0]],
                [STORE[1] + 0.0005, n_lat],
                [STORE[1] - 0.0005, n_lat],
                [STORE[1] - 0.0005, STORE[0]],
            ]
        ],
    }
    iso = Approach(minutes=5, lat=STORE[0], lng=STORE[1], geojson=square)
    assert iso.contains(*offset(*STORE, 600, 0)) and not iso.contains(*offset(*STORE, 100, 90))
    _, events = run(order(approach=iso), [at_m(100, 1, north=False), at_m(600, 2)], POLICY)
    assert [(e.type.value, e.at) for e in events] == [("order.approaching", T0 + timedelta(minutes=2))]
    assert events[0].details["eta_minutes"] is None


def test_arrival_at_the_store_zone_comes_after_approaching_even_when_the_feed_jumps_in():
    _, events = step(order(), Entered(T0 + timedelta(minutes=7), "store-1"), POLICY)
    assert types(events) == ["order.approaching", "order.arrived"]
    assert {e.at for e in events} == {T0 + timedelta(minutes=7)}


def test_wrong_store_once_per_zone_in_a_row_and_never_after_the_arrival():
    steps = [
        Entered(T0 + timedelta(minutes=m), z, other_store=o)
        for m, z, o in [
            (1, "store-2", True),
            (2, "store-2", True),
            (3, "catchment", False),
            (4, "store-3", True),
            (5, "store-1", False),
            (6, "store-2", True),
        ]
    ]
    _, events = run(order(), steps, POLICY)
    assert [(e.type.value, e.details.get("zone_id"), e.at.minute) for e in events] == [
        ("order.arrived_at_wrong_store", "store-2", 1),
        ("order.arrived_at_wrong_store", "store-3", 4),
        ("order.approaching", None, 5),
        ("order.arrived", "store-1", 5),
    ]


def test_pickup_carries_the_wait_since_arrival_and_closes_the_order():
    o, events = run(
        order(),
        [
            Entered(T0 + timedelta(minutes=5), "store-1"),
            PickedUp(T0 + timedelta(minutes=9)),
            Entered(T0 + timedelta(minutes=10), "store-2", True),
            Cancelled(T0),
        ],
        POLICY,
    )
    assert types(events)[-1] == "order.picked_up" and events[-1].details == {"wait_s": 240.0}
    assert o.status is OrderStatus.PICKED_UP and o.picked_up_at == T0 + timedelta(minutes=9)


def test_ready_at_the_ready_time_or_at_creation_when_placed_ready():
    o, events = run(order(), [Tick(T0 + timedelta(minutes=5)), Tick(T0 + timedelta(minutes=25))], POLICY)
    ready = [e for e in events if e.type is OrderEventType.READY]
    assert [(e.at, e.basis) for e in ready] == [
        (T0 + timedelta(minutes=20), "clock")
    ] and o.status is OrderStatus.READY
    _, events = step(order(ready_at=T0 - timedelta(hours=1)), Tick(T0), POLICY)
    assert [(e.type.value, e.at) for e in events if e.type is OrderEventType.READY] == [("order.ready", T0)]


@pytest.mark.parametrize(
    ("last_fix_min", "pickup_from_min", "expected_min"),
    [
        (2, 40, 35),  # silent since 12 min; the schedule's approach (40 - 5) comes later
        (30, 36, 40),  # the scheduled approach (31) passed while the phone still shared: silent from 40
        (None, 30, 25),  # never shared: the schedule alone
        (None, 8, 10),  # never shared, the schedule comes early: the phone had 10 minutes to show up
    ],
)
def test_schedule_stands_in_at_the_later_of_scheduled_approach_and_silence(
    last_fix_min, pickup_from_min, expected_min
):
    o = order(pickup_from=T0 + timedelta(minutes=pickup_from_min), ready_at=T0 + timedelta(minutes=15))
    feed = [] if last_fix_min is None else [at_m(2000, last_fix_min)]
    ticks = [Tick(T0 + timedelta(minutes=m)) for m in range(0, 61, 3)]
    o, events = run(o, [*feed, *ticks], POLICY)
    approaching = [e for e in events if e.type is OrderEventType.APPROACHING]
    assert [(e.at, e.basis) for e in approaching] == [(T0 + timedelta(minutes=expected_min), "schedule")]
    assert o.arrived_at is None  # the schedule never invents an arrival


def test_schedule_does_not_stand_in_while_the_phone_shares():
    feed = [at_m(3000, m) for m in range(0, 60, 5)]
    o = order(pickup_from=T0 + timedelta(minutes=20))
    _, events = run(o, [x for s in feed for x in (s, Tick(s.at + timedelta(minutes=1)))], POLICY)
    assert OrderEventType.APPROACHING not in {e.type for e in events}


def test_positions_from_an_earlier_visit_are_ignored():
    lat, lng = STORE
    _, events = step(order(), Seen(T0 - timedelta(hours=2), lat, lng, 5.0), POLICY)
    assert events == []
    _, events = step(order(), Entered(T0 - timedelta(hours=2), "store-1"), POLICY)
    assert events == []


def test_median_wait():
    assert wait_median_s([]) is None
    assert wait_median_s([300, 60, 120]) == 120 and wait_median_s([60, 120, 300, 600]) == 210


# -- properties ----------------------------------------------------------------------------------------
def observations():
    minute = st.integers(min_value=-5, max_value=90)
    seen = st.builds(
        lambda m, d, a: Seen(T0 + timedelta(minutes=m), *offset(*STORE, d, 0), a),
        minute,
        st.floats(0, 3000),
        st.sampled_from([5.0, 50.0, 300.0]),
    )
    entered = st.builds(
        lambda m, z: Entered(T0 + timedelta(minutes=m), z, z != "store-1"),
        minute,
        st.sampled_from(["store-1", "store-2", "store-3"]),
    )
    tick = st.builds(lambda m: Tick(T0 + timedelta(minutes=m)), minute)
    close = st.builds(
        lambda m, p: (PickedUp if p else Cancelled)(T0 + timedelta(minutes=m)), minute, st.booleans()
    )
    return st.lists(st.one_of(seen, entered, tick, close), max_size=30)


@settings(max_examples=300, deadline=None)
@given(observations(), st.integers(min_value=0, max_value=60))
def test_each_event_at_most_once_in_time_order_and_nothing_after_closing(obs, pickup_min):
    obs = sorted(obs, key=lambda o: o.at)
    o, events = run(order(pickup_from=T0 + timedelta(minutes=pickup_min)), obs, POLICY)
    once = [e.type for e in events if e.type is not OrderEventType.ARRIVED_AT_WRONG_STORE]
    assert len(once) == len(set(once))
    kinds = [e.type for e in events]
    if OrderEventType.ARRIVED in kinds:
        a, b = kinds.index(OrderEventType.APPROACHING), kinds.index(OrderEventType.ARRIVED)
        assert a < b and events[a].at <= events[b].at
    closing = [i for i, k in enumerate(kinds) if k in (OrderEventType.PICKED_UP, OrderEventType.CANCELLED)]
    assert closing in ([], [len(kinds) - 1])
    assert all(e.at >= T0 - POLICY.early for e in events)
    _, more = run(o, obs, POLICY)  # the same observations handed again (the log is at least once)
    # nothing new but a wrong store seen before another one (the order_events key drops it)
    assert all(m.type is OrderEventType.ARRIVED_AT_WRONG_STORE for m in more)


# -- the transactional hours rule ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ready_utc", "tz", "any_hour", "expected_utc"),
    [
        ("2026-12-06T12:00:00+00:00", "Europe/Paris", False, "2026-12-06T12:00:00+00:00"),  # 13:00 local
        (
            "2026-12-06T22:30:00+00:00",
            "Europe/Paris",
            False,
            "2026-12-07T06:00:00+00:00",
        ),  # 23:30 -> 07:00 CET
        ("2026-12-06T22:30:00+00:00", "Europe/Paris", True, "2026-12-06T22:30:00+00:00"),  # asked: any hour
        (
            "2026-03-28T22:30:00+00:00",
            "Europe/Paris",
            False,
            "2026-03-29T05:00:00+00:00",
        ),  # DST night: 07:00 CEST
        ("2026-12-07T05:59:00+00:00", "Europe/Paris", False, "2026-12-07T06:00:00+00:00"),
        ("2026-12-07T04:00:00+00:00", "America/New_York", False, "2026-12-07T12:00:00+00:00"),
    ],
)
def test_transactional_notice_waits_for_the_morning_unless_asked(ready_utc, tz, any_hour, expected_utc):
    got = transactional_send_at(datetime.fromisoformat(ready_utc), tz, any_hour=any_hour)
    assert got == datetime.fromisoformat(expected_utc)
