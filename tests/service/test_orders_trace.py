"""Click-and-collect on a real GPS trace (Vincennes, a run; /work/shared/data): an order at a store placed
on the route, the trace replayed through the live ingest path (fixes kept), the ``orders`` consumer of
the zone-event log and the pass over open orders run on the trace's clock — approaching, then arrived,
then picked up, each at its time; a wrong store passed on the way; and a phone that stops sharing, the
schedule standing in at the instant docs/orders.md gives."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from campaigns.order_tracking import OrderTracker
from campaigns.orders import OrderInput, close_order, create_order, get_order, order_events, pickup_stats
from campaigns.pickup import PickedUp, PickupPolicy, distance_m
from campaigns.storage.deliveries import Delivery
from campaigns.storage.geofence_views import LOCATION_FIXES
from campaigns.storage.outbound_events import read_after
from geofence.fixes import LocationFix
from geofence.service.event_log import Consumer, ConsumerRunner
from geofence.service.runtime import bootstrap
from geofence.traces import Sweep, live_schedule, read_trace_gpx, thin
from tests.conftest import SHARED_DATA
from tests.service.campaign_factories import add_customer
from zones.model import Circle, Zone
from zones.sizing import PROFILES

TRACE = SHARED_DATA / "traces" / "vincennes-2018-01-31.gpx"
STORE_FIX = 1050  # the store sits on the route, reached ~17 minutes into the run
OTHER_STORE_FIX = 550  # another store of the retailer, passed ~9 minutes in
EVERY = timedelta(seconds=5)  # a phone posting every 5 s (the device logged every ~1.4 s)
POLICY = PickupPolicy(stale_after=timedelta(minutes=10))
TRACK_EVERY = timedelta(seconds=30)  # the pass over open orders, in trace time


def trace() -> list[LocationFix]:
    fixes, errors = read_trace_gpx(TRACE.read_text(encoding="utf-8"), device_id="walker")
    assert errors == []
    return fixes


class Replay:
    """The live path on the trace's clock: ingest (or sweep) a step, then the consumer, and the order
    pass every ``TRACK_EVERY``."""

    def __init__(self, settings, engine):
        keep = settings.model_copy(
            update={"ingest": settings.ingest.model_copy(update={"fix_retention_s": 86_400})}
        )
        self.runtime = bootstrap(keep, engine)
        self.runtime.geofence.location_consent = None
        self.engine, self.now = engine, datetime.min
        self.tracker = OrderTracker(engine, now=lambda: self.now, policy=POLICY)
        self.consumer = ConsumerRunner(engine, Consumer("orders", self.tracker.handle), now=lambda: self.now)
        self.zone_events = []
        self.accepted = 0
        self._tracked = None

    def run(self, fixes: list[LocationFix]) -> None:
        for st in live_schedule(fixes, sweep_every=timedelta(seconds=60), batch=1):
            self.now = st.at
            if isinstance(st, Sweep):
                self.zone_events += self.runtime.geofence.sweep(st.at)
            else:
                outcome = self.runtime.geofence.ingest(st.fixes, at=st.at)
                self.zone_events += outcome.events
                self.accepted += sum(r.status == "accepted" for r in outcome.results)
            while self.consumer.run_once():
                pass
            if self._tracked is None or st.at - self._tracked >= TRACK_EVERY:
                self.tracker.run_once()
                self._tracked = st.at

    def idle_until(self, until: datetime, step: timedelta = timedelta(minutes=1)) -> None:
        """The phone is silent: only the clock moves (the worker's pass keeps running)."""
        while self.now < until:
            self.now = min(until, self.now + step)
            self.tracker.run_once()

    def place(self, start: datetime, **fields) -> None:
        with Session(self.engine) as session:
            create_order(
                session,
                OrderInput(id="WEB-1", customer_id="cust1", store_zone_id="store-lac", **fields),
                at=start,
                policy=POLICY,
                default_minutes=5,
                default_profile="drive_urban",
            )
            session.commit()

    def events(self) -> list[tuple[str, datetime, str]]:
        with Session(self.engine) as session:
            return [(e.type, e.at, e.basis) for e in order_events(session, "WEB-1")]


def stores(fixes: list[LocationFix]) -> list[Zone]:
    """The stores, placed on the recorded (unthinned) route."""
    here, other = fixes[STORE_FIX], fixes[OTHER_STORE_FIX]
    return [
        Zone("store-lac", "Lac Daumesnil", Circle(here.lat, here.lng, 40.0), store_id="S1", profile="walk"),
        Zone("store-2", "Porte Jaune", Circle(other.lat, other.lng, 40.0), store_id="S2", profile="walk"),
    ]


@pytest.fixture
def replay(settings, sqlite_engine):
    r = Replay(settings, sqlite_engine)
    with Session(sqlite_engine) as session:
        add_customer(
            session, datetime.fromisoformat("2018-01-30T00:00:00+00:00"), cid="cust1", device_id="walker"
        )
    return r


def test_a_run_to_the_store_gives_approaching_then_arrived_then_picked_up_with_their_times(replay):
    recorded = trace()
    fixes, zones = thin(recorded, EVERY), stores(recorded)
    replay.runtime.geofence.save_zones(zones, at=fixes[0].recorded_at)
    start = fixes[0].recorded_at
    ready_at = start + timedelta(minutes=7)
    replay.place(start, ready_at=ready_at)
    until = recorded[STORE_FIX].recorded_at + timedelta(minutes=2)
    replay.run([f for f in fixes if f.recorded_at <= until])

    store = zones[0].geometry
    radius_m = PROFILES["walk"].radius_m(5)  # 397 m: five minutes on foot
    first_within = next(
        f.recorded_at for f in fixes if distance_m(f.lat, f.lng, store.lat, store.lng) <= radius_m
    )
    entered = {e.zone_id: e.at for e in reversed(replay.zone_events) if e.kind.value == "enter"}
    confirmed_at = entered["store-lac"] + timedelta(minutes=4)
    with Session(replay.engine) as session:
        close_order(session, "WEB-1", PickedUp(confirmed_at), at=confirmed_at, policy=POLICY)
        session.commit()

    assert replay.events() == [
        ("order.ready", ready_at, "clock"),
        ("order.arrived_at_wrong_store", entered["store-2"], "location"),
        ("order.approaching", first_within, "location"),
        ("order.arrived", entered["store-lac"], "location"),
        ("order.picked_up", confirmed_at, "store"),
    ]
    assert start < entered["store-2"] < first_within < entered["store-lac"]
    assert entered["store-lac"] - first_within < timedelta(minutes=5)  # a runner beats the walking pace
    with Session(replay.engine) as session:
        order = get_order(session, "WEB-1")
        assert (order.status, order.approaching_at, order.arrived_at) == (
            "picked_up",
            first_within,
            entered["store-lac"],
        )
        stats = pickup_stats(session, "store-lac", since=start)
        assert (stats.picked_up, stats.measured, stats.median_wait_s) == (1, 1, 240.0)
        notice = session.execute(
            select(Delivery).where(Delivery.idempotency_key == "txn:order:WEB-1:ready")
        ).scalar_one()
        assert (notice.channel, notice.due_at, notice.data["_purpose"]) == ("push", ready_at, "order_updates")
        assert "Lac Daumesnil" in notice.body
        # the positions came from the retained fixes: every accepted one is kept, not only those the
        # zone index was asked about
        assert session.execute(select(func.count()).select_from(LOCATION_FIXES)).scalar() == replay.accepted
        # the same events, with the same times, on the store-side log the webhooks relay (order.*)
        logged = [
            (e.type, e.occurred_at, e.payload["basis"])
            for e in read_after(session, 0, 1000)
            if e.type.startswith("order.")
        ]
        assert logged == replay.events()


@pytest.mark.parametrize(
    ("pickup_in", "stands_in"),
    [
        (timedelta(minutes=30), "scheduled"),  # silent by then: the schedule's approach time itself
        (timedelta(minutes=12), "silence"),  # the scheduled approach passed while sharing: at the silence
    ],
)
def test_a_phone_that_stops_sharing_gets_the_schedule_standing_in(replay, pickup_in, stands_in):
    recorded = trace()
    fixes = thin(recorded, EVERY)
    replay.runtime.geofence.save_zones(stores(recorded), at=fixes[0].recorded_at)
    start = fixes[0].recorded_at
    pickup_from = start + pickup_in
    replay.place(start, ready_at=start + timedelta(minutes=5), pickup_from=pickup_from)
    stop = start + timedelta(minutes=6)  # the phone stops sharing 6 minutes in, 1.4 km from the store
    shared = [f for f in fixes if f.recorded_at <= stop]
    replay.run(shared)
    replay.idle_until(start + timedelta(minutes=40))

    last_fix = shared[-1].recorded_at
    scheduled = pickup_from - timedelta(minutes=5)
    expected = scheduled if stands_in == "scheduled" else last_fix + POLICY.stale_after
    assert expected == max(scheduled, last_fix + POLICY.stale_after)
    assert [e for e in replay.events() if e[0] == "order.approaching"] == [
        ("order.approaching", expected, "schedule")
    ]
    assert "order.arrived" not in {e[0] for e in replay.events()}  # never invented
    with Session(replay.engine) as session:
        close_order(session, "WEB-1", PickedUp(replay.now), at=replay.now, policy=POLICY)
        session.commit()
        stats = pickup_stats(session, "store-lac", since=start)
    assert (stats.picked_up, stats.measured, stats.median_wait_s) == (1, 0, None)  # no arrival: no wait
