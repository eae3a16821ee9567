"""Click-and-collect over HTTP and through the outbox: placing is idempotent on the order id, closing
twice is a no-op and closing the other way a conflict; the "ready" notice is transactional (its own
purpose, not marketing consent; never twice; STOP still stops an SMS; held at night unless asked); the
order.* events reach the store-side log; the arrival alert's hook sees the order waiting."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlmodel import Session

from campaigns.dispatcher import dispatch_due
from campaigns.orders import advance, close_order, get_order, order_waiting
from campaigns.pickup import Entered, PickedUp, PickupPolicy
from campaigns.providers.base import Channel
from campaigns.storage.customers import ConsentEvent, Device, Suppression
from campaigns.storage.deliveries import Delivery
from campaigns.storage.outbound_events import read_after
from tests.service.campaign_factories import RecordingProvider, add_customer
from tests.service.consent_helpers import build_app
from zones.model import Circle, Zone

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)  # 11:00 in Paris
STORE = Zone("store-1", "Gare de Lyon", Circle(48.8443, 2.3744, 50.0), store_id="S1", tz="Europe/Paris")
KEY = "txn:order:A-1:ready"


@pytest.fixture
def app(settings, engine):
    application = build_app(settings, engine)
    application.state.runtime.geofence.save_zones([STORE], at=T0)
    with Session(engine) as session:
        add_customer(session, T0, cid="cust1", device_id="dev1", consents=("location_offers",))
    return application


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        # FastAPI builds a route's models at its first request, and under freeze_time a ``datetime``
        # annotation resolves to FakeDatetime: a first request to each route, unfrozen
        c.post("/v1/orders", json={})
        for path in ("/v1/orders/warm-up/picked-up", "/v1/orders/warm-up/cancel"):
            c.post(path)
        c.get("/v1/orders/warm-up")
        c.get("/v1/stores/warm-up/pickup-stats")
        yield c


def body(**changes):
    return {
        "id": "A-1",
        "customer_id": "cust1",
        "store_zone_id": "store-1",
        "ready_at": T0.isoformat(),
        **changes,
    }


def notice(engine) -> Delivery | None:
    with Session(engine) as session:
        return session.execute(select(Delivery).where(Delivery.idempotency_key == KEY)).scalar_one_or_none()


def dispatch(engine, at, provider):
    return dispatch_due(engine, providers={provider.channel.value: provider}, now=lambda: at)


@freeze_time(T0)
def test_placing_is_idempotent_on_the_order_id_and_refuses_other_details(client, engine):
    first = client.post("/v1/orders", json=body())
    assert first.status_code == 201 and first.json()["status"] == "ready"
    again = client.post("/v1/orders", json=body())
    assert again.status_code == 200 and again.json()["created_at"] == first.json()["created_at"]
    assert client.post("/v1/orders", json=body(store_zone_id="other")).status_code == 409
    with Session(engine) as session:
        assert len(session.execute(select(Delivery)).all()) == 1  # one notice, whatever the retries
    assert [e["type"] for e in client.get("/v1/orders/A-1").json()["events"]] == ["order.ready"]


@freeze_time(T0)
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"customer_id": "nobody"}, "unknown customer"),
        ({"store_zone_id": "nowhere"}, "unknown zone"),
        (
            {
                "pickup_from": (T0 + timedelta(hours=2)).isoformat(),
                "pickup_until": (T0 + timedelta(hours=1)).isoformat(),
            },
            "pickup_until",
        ),
        ({"ready_at": "2026-12-07T10:00:00"}, None),  # no time zone
        ({"ready_at": "9999-12-31T23:00:00+00:00"}, None),  # out of range
    ],
)
def test_bad_orders_are_a_422_with_a_reason(client, changes, reason):
    answer = client.post("/v1/orders", json=body(id="B-1", **changes))
    assert answer.status_code == 422
    if reason:
        assert reason in answer.json()["detail"]


@freeze_time(T0)
def test_pickup_twice_is_one_event_and_cancelling_a_collected_order_is_a_conflict(client, engine):
    client.post("/v1/orders", json=body(ready_at=(T0 + timedelta(hours=1)).isoformat()))
    at = (T0 - timedelta(minutes=1)).isoformat()
    done = client.post("/v1/orders/A-1/picked-up", json={"at": at})
    assert done.status_code == 200 and done.json()["picked_up_at"] == at.replace("+00:00", "Z")
    assert client.post("/v1/orders/A-1/picked-up").status_code == 200
    assert client.post("/v1/orders/A-1/cancel").status_code == 409
    assert client.post("/v1/orders/nope/cancel").status_code == 404
    assert client.get("/v1/orders/nope").status_code == 404
    assert [e["type"] for e in client.get("/v1/orders/A-1").json()["events"]] == ["order.picked_up"]
    assert notice(engine) is None  # collected before it was ready: no notice was ever queued


def test_cancel_withdraws_a_notice_still_waiting(client, engine):
    night = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)  # 23:30 in Paris: the notice waits for 07:00
    with freeze_time(night):
        assert client.post("/v1/orders", json=body(ready_at=night.isoformat())).status_code == 201
        assert notice(engine).due_at == datetime(2026, 12, 8, 6, 0, tzinfo=UTC)
        assert client.post("/v1/orders/A-1/cancel", json={"reason": "out of stock"}).status_code == 200
    row = notice(engine)
    assert (row.status, row.reason) == ("cancelled", "order_cancelled")
    provider = RecordingProvider()
    dispatch(engine, datetime(2026, 12, 8, 7, 0, tzinfo=UTC), provider)
    assert provider.sent == []


def test_notice_at_night_only_when_the_customer_asked(client, engine):
    night = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)
    with freeze_time(night):
        client.post("/v1/orders", json=body(ready_at=night.isoformat(), notify_any_hour=True))
    assert notice(engine).due_at == night


@freeze_time(T0)
def test_ready_notice_goes_once_without_marketing_consent(client, engine):
    """The customer granted no push or SMS marketing: the transactional notice still goes, once."""
    assert client.post("/v1/orders", json=body()).status_code == 201
    provider = RecordingProvider()
    dispatch(engine, T0, provider)
    dispatch(engine, T0 + timedelta(minutes=5), provider)
    client.post("/v1/orders", json=body())  # the back end retries the create
    dispatch(engine, T0 + timedelta(minutes=10), provider)
    assert [(m.channel, m.to, m.title) for m in provider.sent] == [
        (Channel.PUSH, "tok-dev1", "Votre commande est prête")
    ]
    assert "Gare de Lyon" in provider.sent[0].body and provider.sent[0].data["order_id"] == "A-1"
    assert "_purpose" not in provider.sent[0].data
    with Session(engine) as session:
        granted = (
            session.execute(select(ConsentEvent).where(ConsentEvent.purpose == "order_updates"))
            .scalars()
            .all()
        )
    assert [(c.granted, c.evidence) for c in granted] == [(True, {"order_id": "A-1"})]


@freeze_time(T0)
def test_sms_notice_honours_stop_and_a_withdrawn_order_updates(client, engine):
    with Session(engine) as session:
        add_customer(session, T0, cid="cust2", device_id="dev2", consents=(), phone="+33611111111")
        add_customer(session, T0, cid="cust3", device_id="dev3", consents=(), phone="+33622222222")
        for device in ("dev2", "dev3"):  # no push token: the notice goes by SMS
            session.get(Device, device).push_token = None
        session.add(Suppression(phone_hash="h-cust2", channel="sms", reason="sms_keyword", created_at=T0))
        session.add(
            ConsentEvent(
                customer_id="cust3",
                seq=1,
                purpose="order_updates",
                granted=False,
                occurred_at=T0 - timedelta(days=1),
                recorded_at=T0,
                source="app_screen",
            )
        )
        session.commit()
    client.post("/v1/orders", json=body(id="S-2", customer_id="cust2"))
    client.post("/v1/orders", json=body(id="S-3", customer_id="cust3"))
    sms = RecordingProvider(channel=Channel.SMS)
    dispatch(engine, T0, sms)
    assert sms.sent == []
    with Session(engine) as session:
        rows = {
            d.customer_id: (d.channel, d.status, d.reason)
            for d in session.execute(select(Delivery)).scalars()
        }
    assert rows == {
        "cust2": ("sms", "skipped", "suppressed"),
        "cust3": ("sms", "skipped", "no_consent:order_updates"),
    }


@freeze_time(T0)
def test_order_events_reach_the_store_side_log_and_the_arrival_hook_sees_the_waiting_order(client, engine):
    client.post("/v1/orders", json=body(pickup_until=(T0 + timedelta(hours=2)).isoformat()))
    with Session(engine) as session:
        waiting = order_waiting(session, "cust1", "store-1", T0)
        assert waiting == {
            "order_id": "A-1",
            "status": "ready",
            "ready_at": T0.isoformat(),
            "pickup_from": None,
            "pickup_until": (T0 + timedelta(hours=2)).isoformat(),
        }
        assert order_waiting(session, "cust1", "elsewhere", T0) is None
    client.post("/v1/orders/A-1/picked-up")
    with Session(engine) as session:
        assert order_waiting(session, "cust1", "store-1", T0) is None
        logged = [
            (e.type, e.subject_id, e.occurred_at, e.payload["basis"])
            for e in read_after(session, 0, 100)
            if e.type.startswith("order.")
        ]
    assert logged == [("order.ready", "A-1", T0, "clock"), ("order.picked_up", "A-1", T0, "store")]


@freeze_time(T0)
def test_pickup_stats_median_wait_and_unknown_zone(client, engine):
    for i, wait_min in enumerate((2, 10, 4)):
        client.post("/v1/orders", json=body(id=f"W-{i}"))
        with Session(engine) as session:
            arrived = T0 - timedelta(minutes=10)
            advance(
                session,
                get_order(session, f"W-{i}"),
                [Entered(arrived, "store-1")],
                at=T0,
                policy=PickupPolicy(),
            )
            close_order(
                session,
                f"W-{i}",
                PickedUp(arrived + timedelta(minutes=wait_min)),
                at=T0,
                policy=PickupPolicy(),
            )
            session.commit()
    stats = client.get("/v1/stores/store-1/pickup-stats", params={"days": 7}).json()
    assert (stats["picked_up"], stats["measured"], stats["median_wait_s"]) == (3, 3, 240.0)
    assert client.get("/v1/stores/nowhere/pickup-stats").status_code == 404
