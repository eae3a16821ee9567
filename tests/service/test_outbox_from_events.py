"""Zone events -> campaign deliveries: matching, priority, skipped reasons, deferral, atomic caps,
and the whole path to the provider with a frozen clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.dispatcher import dispatch_due
from campaigns.handler import CampaignHandler
from geofence.events import TransitionKind, ZoneEvent
from geofence.service import clock
from geofence.service.db import make_engine
from geofence.service.tables.campaigns import CampaignRow, CapReservation, Delivery
from geofence.service.tables.customers import ConsentEvent, Customer, Device
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.zones import ZoneRow
from tests.service.campaign_factories import (
    RecordingProvider,
    add_campaign,
    add_customer,
    add_zone,
    add_zone_event,
)

MONDAY_1145 = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)  # 11:45 Paris


def lunch(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "lunch",
        "name": "Lunch",
        "status": "active",
        "priority": 1,
        "trigger": {"zone_tags": ["restaurant"], "kinds": ["enter"]},
        "channel": "push",
        "templates": {"fr": {"title": "Bonjour {first_name}", "body": "-10% chez {store_name}"}},
        "windows": [{"days": "mon-fri", "start": "11:30", "end": "12:00"}],
    }
    data.update(overrides)
    return data


def event(at: datetime, *, eid: str = "e1", visit: str = "v1", device: str = "dev1") -> ZoneEvent:
    return ZoneEvent(
        id=eid,
        zone_id="z1",
        device_id=device,
        kind=TransitionKind.ENTER,
        at=at,
        visit_id=visit,
        reason="test",
        lat=48.857,
        lng=2.352,
    )


def rows(session: Session) -> list[Delivery]:
    session.expire_all()
    return list(session.execute(select(Delivery).order_by(Delivery.campaign_id)).scalars())


def setup_world(session: Session, at: datetime, *campaigns: dict[str, Any], **customer: Any) -> None:
    add_zone(session, at)
    add_customer(session, at, **customer)
    for definition in campaigns or (lunch(),):
        add_campaign(session, at, definition)


def test_event_in_window_creates_a_pending_rendered_delivery(engine: Engine, session: Session) -> None:
    setup_world(session, MONDAY_1145)
    handler = CampaignHandler(engine, now=clock.now)
    with freeze_time(MONDAY_1145 + timedelta(seconds=2)):
        handler([event(MONDAY_1145)])
        handler([event(MONDAY_1145)])  # the same event again: idempotent
    (row,) = rows(session)
    assert (row.status, row.channel, row.reason) == ("pending", "push", "ok")
    assert (row.title, row.body) == ("Bonjour Ana", "-10% chez Café Lumière")
    assert row.idempotency_key == "lunch:e1"
    assert len(session.execute(select(CapReservation)).scalars().all()) >= 3  # day, week, visit...


def test_outside_window_is_deferred_to_the_opening(engine: Engine, session: Session) -> None:
    setup_world(session, MONDAY_1145, lunch(out_of_window={"mode": "defer", "max_delay_s": 4 * 3600}))
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 Paris
    with freeze_time(at):
        CampaignHandler(engine, now=clock.now)([event(at)])
    (row,) = rows(session)
    assert row.status == "deferred"
    assert row.due_at.replace(tzinfo=UTC) == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert row.reason == "deferred:campaign_window"
    assert row.data["_deferred"] == "1"


def test_skips_are_recorded_with_their_reason(engine: Engine, session: Session) -> None:
    setup_world(session, MONDAY_1145, consents=("push_marketing",))
    with freeze_time(MONDAY_1145):
        CampaignHandler(engine, now=clock.now)([event(MONDAY_1145)])
    (row,) = rows(session)
    assert (row.status, row.reason) == ("skipped", "no_consent:location_offers")
    assert session.execute(select(CapReservation)).scalars().all() == []


def test_unknown_device_is_recorded_as_skipped(engine: Engine, session: Session) -> None:
    setup_world(session, MONDAY_1145)
    with freeze_time(MONDAY_1145):
        CampaignHandler(engine, now=clock.now)([event(MONDAY_1145, device="stranger")])
    (row,) = rows(session)
    assert (row.status, row.reason, row.customer_id) == ("skipped", "unknown_customer", None)


def test_highest_priority_wins_and_the_others_are_superseded(engine: Engine, session: Session) -> None:
    setup_world(
        session,
        MONDAY_1145,
        lunch(),
        lunch(id="vip", priority=5),
        lunch(id="paused", priority=9, status="paused"),
        lunch(id="elsewhere", trigger={"zone_ids": ["z9"]}),
    )
    with freeze_time(MONDAY_1145):
        CampaignHandler(engine, now=clock.now)([event(MONDAY_1145)])
    outcome = {r.campaign_id: (r.status, r.reason) for r in rows(session)}
    assert outcome == {"vip": ("pending", "ok"), "lunch": ("skipped", "superseded:vip")}


def test_a_taken_cap_slot_makes_the_event_skip(engine: Engine, session: Session) -> None:
    # The reservation exists but its delivery is not visible to the history read (the race the
    # UNIQUE constraint closes): the event must still not pass a cap of one.
    setup_world(session, MONDAY_1145, max_offers_per_day=1)
    session.add(
        CapReservation(
            customer_id="cust1", bucket="day:2026-11-23", slot=0, delivery_id="other", created_at=MONDAY_1145
        )
    )
    session.commit()
    with freeze_time(MONDAY_1145):
        CampaignHandler(engine, now=clock.now)([event(MONDAY_1145)])
    (row,) = rows(session)
    assert (row.status, row.reason) == ("skipped", "cap:day_taken")


def test_second_offer_the_same_day_is_capped_by_history(engine: Engine, session: Session) -> None:
    setup_world(
        session,
        MONDAY_1145,
        lunch(),
        lunch(id="other", trigger={"zone_tags": ["restaurant"]}, caps={"zone_cooldown_s": 0}),
        max_offers_per_day=1,
    )
    handler = CampaignHandler(engine, now=clock.now)
    with freeze_time(MONDAY_1145):
        handler([event(MONDAY_1145, eid="e1", visit="v1")])
    with freeze_time(MONDAY_1145 + timedelta(minutes=5)):
        handler([event(MONDAY_1145 + timedelta(minutes=5), eid="e2", visit="v2")])
    statuses = sorted((r.event_id, r.campaign_id, r.status, r.reason) for r in rows(session))
    assert statuses[0][2] == "pending"
    assert all(s[2] == "skipped" for s in statuses[1:])
    assert {s[3] for s in statuses if s[1] == "other" and s[0] == "e2"} == {"cap:customer_cadence_day"}


@pytest.mark.postgres
def test_concurrent_events_cannot_both_pass_a_cap_of_one(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        for round_no in range(8):
            _clear(engine)
            with Session(engine) as session:
                setup_world(
                    session,
                    MONDAY_1145,
                    lunch(caps={"cooldown_s": 0, "zone_cooldown_s": 0, "one_per_visit": False}),
                    max_offers_per_day=1,
                )
            handlers = [CampaignHandler(engine, now=lambda: MONDAY_1145) for _ in range(4)]
            barrier = threading.Barrier(len(handlers))

            def run(i: int, barrier: threading.Barrier = barrier, handlers: list[Any] = handlers) -> None:
                barrier.wait()
                handlers[i]([event(MONDAY_1145, eid=f"e{i}", visit=f"v{i}")])

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(handlers))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            with Session(engine) as session:
                found = [(r.status, r.reason) for r in rows(session)]
            assert len(found) == 4, found
            assert sum(1 for s, _ in found if s == "pending") == 1, f"round {round_no}: {found}"
    finally:
        _clear(engine)
        engine.dispose()


def _clear(engine: Engine) -> None:
    with Session(engine) as session:
        for table in (
            CapReservation,
            Delivery,
            ConsentEvent,
            Device,
            Customer,
            CampaignRow,
            ZoneRow,
            ZoneEventRow,
        ):
            session.execute(delete(table))
        session.commit()


def test_deferred_offer_goes_out_at_the_opening_not_at_night(engine: Engine, session: Session) -> None:
    # A 24/7 campaign triggered at 23:10 Paris on the night clocks go back (Sat 24 -> Sun 25 Oct 2026)
    # with a 12 h deferral: the push quiet period (21:00-08:00) holds it until 08:00 CET (07:00Z).
    at = datetime(2026, 10, 24, 21, 10, tzinfo=UTC)
    setup_world(session, at, lunch(windows=[], out_of_window={"mode": "defer", "max_delay_s": 12 * 3600}))
    add_zone_event(session, event_id="e1", at=at)
    provider = RecordingProvider()
    with freeze_time(at) as frozen:
        CampaignHandler(engine, now=clock.now)([event(at)])
        (row,) = rows(session)
        assert row.due_at.replace(tzinfo=UTC) == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)
        for _ in range(20):  # the dispatcher runs all night: nothing leaves before 08:00 local
            frozen.tick(timedelta(minutes=30))
            dispatch_due(engine, providers={"push": provider}, now=clock.now)
            if provider.sent:
                break
    (row,) = rows(session)
    assert row.status == "sent"
    sent_at = row.sent_at.replace(tzinfo=UTC)
    assert datetime(2026, 10, 25, 7, 0, tzinfo=UTC) <= sent_at < datetime(2026, 10, 25, 7, 31, tzinfo=UTC)
    assert len(provider.sent) == 1


def test_cap_slot_of_a_cancelled_delivery_is_given_back(engine: Engine, session: Session) -> None:
    from campaigns.cancellation import cancel_waiting_deliveries

    setup_world(
        session, MONDAY_1145, lunch(caps={"cooldown_s": 0, "zone_cooldown_s": 0}), max_offers_per_day=1
    )
    handler = CampaignHandler(engine, now=clock.now)
    with freeze_time(MONDAY_1145):
        handler([event(MONDAY_1145, eid="e1", visit="v1")])
        cancel_waiting_deliveries(
            session, customer_id="cust1", channels=["push"], reason="opt-out", at=MONDAY_1145
        )
        session.commit()
        handler([event(MONDAY_1145, eid="e2", visit="v2")])
    outcome = {r.event_id: r.status for r in rows(session)}
    assert outcome == {"e1": "cancelled", "e2": "pending"}


def test_zone_info_reads_the_zones_package_format() -> None:
    import zones.model as zones_model
    from campaigns.zone_info import zone_info_from_row

    at = MONDAY_1145
    circle = zones_model.Zone(
        id="z1",
        name="Café",
        geometry=zones_model.Circle(48.85, 2.35, 120.0),
        tags=frozenset({"restaurant"}),
        tz="America/Montreal",
        country="CA",
    )
    square = [[2.0, 48.0], [2.2, 48.0], [2.2, 48.2], [2.0, 48.2], [2.0, 48.0]]
    area = zones_model.Zone(
        id="z2", name="Mall", geometry=zones_model.Area({"type": "Polygon", "coordinates": [square]})
    )
    info = zone_info_from_row(
        ZoneRow(id="z1", name="Café", data=circle.to_dict(), created_at=at, updated_at=at)
    )
    assert (info.tz, info.country, info.tags, info.lat, info.lng) == (
        "America/Montreal",
        "CA",
        frozenset({"restaurant"}),
        48.85,
        2.35,
    )
    info = zone_info_from_row(
        ZoneRow(id="z2", name="Mall", data=area.to_dict(), created_at=at, updated_at=at)
    )
    assert info.lat == pytest.approx(48.1) and info.lng == pytest.approx(2.1)  # mean of the ring's vertices


def test_zone_info_of_a_travel_time_zone_has_its_mode_and_store() -> None:
    import zones.model as zones_model
    from campaigns.zone_info import zone_info_from_row

    square = [[2.0, 48.0], [2.2, 48.0], [2.2, 48.2], [2.0, 48.2], [2.0, 48.0]]
    travel = zones_model.Travel(lat=48.01, lng=2.02, mode="walk", minutes=5, method="isochrone",
                                requested_mode="auto")
    iso = zones_model.Zone(id="z3", name="Shop", travel=travel,
                           geometry=zones_model.Area({"type": "Polygon", "coordinates": [square]}))
    row = ZoneRow(id="z3", name="Shop", data=iso.to_dict(), created_at=MONDAY_1145, updated_at=MONDAY_1145)
    info = zone_info_from_row(row)
    assert (info.lat, info.lng, info.travel_mode) == (48.01, 2.02, "walk")  # the store, not the ring's mean
    drive = zones_model.Zone(id="z4", name="Hyper", geometry=zones_model.Circle(48.0, 2.0, 4861.0),
                             profile="drive_rural", minutes=5)
    row = ZoneRow(id="z4", name="Hyper", data=drive.to_dict(), created_at=MONDAY_1145, updated_at=MONDAY_1145)
    assert zone_info_from_row(row).travel_mode == "drive"


def test_directions_link_opens_apple_maps_on_foot_for_an_iphone_near_a_walking_zone(
    engine: Engine, session: Session
) -> None:
    body = {"fr": {"body": "{store_name}: {directions_url}"}}
    setup_world(session, MONDAY_1145, lunch(templates=body))
    zone = session.get(ZoneRow, "z1")
    assert zone is not None
    zone.data = {**zone.data, "travel": {"lat": 48.8566, "lng": 2.3522, "mode": "walk", "minutes": 5,
                                         "method": "isochrone", "requested_mode": "auto"}}
    device = session.get(Device, "dev1")
    assert device is not None
    device.platform = "ios"
    session.commit()
    with freeze_time(MONDAY_1145 + timedelta(seconds=2)):
        CampaignHandler(engine, now=clock.now)([event(MONDAY_1145)])
    (row,) = rows(session)
    assert row.data["directions_url"] == "https://maps.apple.com/?daddr=48.856600,2.352200&dirflg=w"
    assert row.body.endswith("dirflg=w")
