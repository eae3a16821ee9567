"""Store-side events through webhooks: message, consent and opt-out events emitted where those
changes commit, arrival alerts for the store (consent ``store_welcome``, once per visit, stopped by a
withdrawal), each verified by the reference ``standardwebhooks`` library in a loopback receiver; the
target pinned to the address checked (a resolver seam plays the rebinding DNS); webhook metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from campaigns.arrivals import alert_arrival
from campaigns.cancellation import cancel_waiting_deliveries
from campaigns.customers import record_consent
from campaigns.inbound_sms import InboundSms, handle_inbound_sms
from campaigns.outbox import claim_due
from campaigns.outbox_results import record_result
from campaigns.privacy import erase_customer
from campaigns.providers.base import SendResult
from campaigns.storage.outbound_events import OutboundEventRow
from geofence.events import TransitionKind, ZoneEvent
from geofence.service.app import create_app
from geofence.service.location_data import SqlLocationData
from geofence.service.settings import Settings, WebhookSettings
from geofence.service.tables.webhooks import WebhookDeliveryRow
from geofence.service.tables.zones import ZoneRow
from geofence.service.webhook_store_events import StoreEventRelay
from geofence.service.webhook_targets import pin, resolve_target
from geofence.service.webhooks import WebhookSender
from tests.service.campaign_factories import add_customer, add_delivery, add_zone
from tests.service.webhook_receiver import Receiver, running_receiver

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
PHONE = "+33612345678"


def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def client(settings: Settings, sqlite_engine: Engine) -> Iterator[TestClient]:
    hooks = settings.model_copy(update={"webhooks": WebhookSettings(allow_private_targets=True)})
    with TestClient(create_app(hooks, engine=sqlite_engine, run_jobs=False)) as c:
        yield c


def register(client: TestClient, receiver: Receiver, types: list[str], zones: list[str] | None = None) -> str:
    body = {"url": receiver.url, "event_types": types, "zone_ids": zones or []}
    answer = client.post("/v1/admin/webhooks", json=body)
    assert answer.status_code == 201, answer.text
    receiver.secret = answer.json()["secret"]
    return str(answer.json()["id"])


def pump(engine: Engine, **sender: object) -> None:
    """The relay's pass over the store-side log, then the sender's."""
    while StoreEventRelay(engine, now=now).run_once():
        pass
    kwargs = {"now": now, "allow_private": True, "threads": 1, "rng": lambda: 0.5, "timeout_s": 5} | sender
    while WebhookSender(engine, **kwargs).run_once():  # type: ignore[arg-type]
        pass


def types_of(receiver: Receiver) -> list[str]:
    return [r.body["type"] for r in receiver.accepted]


# -- messages, consent, opt-outs -------------------------------------------------------------------
def test_message_events_follow_the_delivery_and_carry_no_phone_or_token(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    register(client, receiver, ["message.*"])
    with Session(sqlite_engine, expire_on_commit=False) as s:
        add_customer(s, T0)
        sent = add_delivery(s, T0, key="k-sent")
    claimed = claim_due(sqlite_engine, at=T0 + timedelta(seconds=1), lease=timedelta(minutes=1), limit=10,
                        worker="test")
    assert [d.id for d in claimed] == [sent.id]
    sent = claimed[0]
    with Session(sqlite_engine, expire_on_commit=False) as s:
        skipped = add_delivery(s, T0, key="k-cancel", channel="sms")
    with Session(sqlite_engine, expire_on_commit=False) as s:
        token = sent.leased_by or ""
        record_result(s, sent, token=token, at=T0, result=SendResult("m-1"), provider_name="memory")
        s.commit()
    pump(sqlite_engine)
    assert receiver.bad_signatures == 0
    by_type = {r.body["type"]: r.body["data"] for r in receiver.accepted}
    assert by_type["message.sent"]["delivery_id"] == sent.id
    assert by_type["message.sent"]["campaign_id"] == "c1" and by_type["message.sent"]["channel"] == "push"
    assert {"customer_id", "device_id", "zone_id", "visit_id", "status", "reason"} <= set(
        by_type["message.sent"]
    )
    raw = json.dumps([r.body for r in receiver.accepted])
    assert PHONE not in raw and "tok-dev1" not in raw and "Hello" not in raw  # no address, no message text
    assert skipped.id not in raw  # still waiting: nothing to say yet
    with Session(sqlite_engine) as s:
        why = "consent_withdrawn:x"
        cancel_waiting_deliveries(s, customer_id="cust1", channels=["sms"], reason=why, at=T0)
        s.commit()
    pump(sqlite_engine)
    last = receiver.accepted[-1].body
    assert last["type"] == "message.skipped"
    assert last["data"]["delivery_id"] == skipped.id and last["data"]["reason"] == "consent_withdrawn:x"


def test_stop_in_french_is_an_opt_out_and_a_consent_change_without_the_number(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    from campaigns.phones import phone_hash

    register(client, receiver, ["consent.changed", "customer.opted_out"])
    with Session(sqlite_engine) as s:
        customer = add_customer(s, T0)
        customer.phone_hash = phone_hash(PHONE, "k")
        s.add(customer)
        s.commit()
        sms = InboundSms(message_sid="SM1", from_number=PHONE, to_number="+33700000000", body="Arrêt")
        handle_inbound_sms(s, sms, at=T0, hash_key="k")
        s.commit()
    pump(sqlite_engine)
    assert types_of(receiver) == ["consent.changed", "customer.opted_out"]
    changed, out = (r.body["data"] for r in receiver.accepted)
    assert changed["purpose"] == "sms_marketing" and changed["granted"] is False
    assert changed["source"] == "sms_keyword" and changed["customer_id"] == "cust1"
    assert out == out | {"customer_id": "cust1", "channels": ["sms"], "reason": "sms_keyword"}
    assert out["keyword"]
    assert PHONE not in json.dumps([r.body for r in receiver.accepted])


# -- arrival alerts ----------------------------------------------------------------------------------
def arrival(kind: str, visit: str, *, device: str = "dev1", zone: str = "store-12") -> ZoneEvent:
    return ZoneEvent(id=f"{visit}-{kind}", zone_id=zone, device_id=device, kind=TransitionKind(kind), at=T0,
                     visit_id=visit, reason="test", lat=48.85, lng=2.35)


def alert(engine: Engine, event: ZoneEvent, *, at: datetime = T0) -> str:
    with Session(engine) as s:
        outcome = alert_arrival(s, event, at=at)
        s.commit()
    return outcome


def store_setup(engine: Engine) -> None:
    with Session(engine) as s:
        add_zone(s, T0, zone_id="store-12")
        add_zone(s, T0, zone_id="store-13")
        add_zone(s, T0, zone_id="not-a-store")
        for zone_id, store_id in (("store-12", "S12"), ("store-13", "S13")):
            s.execute(update(ZoneRow).where(col(ZoneRow.id) == zone_id).values(store_id=store_id))
        s.commit()
        add_customer(s, T0, consents=("store_welcome",), locale="en")
        add_customer(s, T0, cid="cust2", device_id="dev2", consents=("location_offers", "push_marketing"))


def test_a_consenting_customer_arriving_raises_one_alert_per_visit_with_only_what_the_store_may_know(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    store_setup(sqlite_engine)
    register(client, receiver, ["store.customer_arrived"], zones=["store-12"])
    assert alert(sqlite_engine, arrival("enter", "v1")) == "alerted"
    assert alert(sqlite_engine, arrival("dwell", "v1")) == "already_alerted"
    assert alert(sqlite_engine, arrival("exit", "v1")) == "not_an_arrival"
    assert alert(sqlite_engine, arrival("enter", "v2", device="dev2")) == "no_consent"
    assert alert(sqlite_engine, arrival("enter", "v3", zone="not-a-store")) == "not_a_store"
    assert alert(sqlite_engine, arrival("enter", "v4", zone="store-13")) == "alerted"  # not this store's feed
    assert alert(sqlite_engine, arrival("dwell", "v5")) == "alerted"  # a later visit, first seen dwelling
    pump(sqlite_engine)
    assert receiver.bad_signatures == 0
    assert types_of(receiver) == ["store.customer_arrived", "store.customer_arrived"]
    data = receiver.accepted[0].body["data"]
    allowed = {"zone_id", "store_id", "first_name", "language", "order_waiting", "event_id", "subject_id"}
    assert set(data) == allowed
    assert data == {**data, "zone_id": "store-12", "store_id": "S12", "first_name": "Ana", "language": "en",
                    "order_waiting": None}
    assert data["subject_id"].startswith("arr_")  # not the customer's id


def test_withdrawing_store_welcome_stops_alerts_at_once_even_one_waiting_for_its_receiver(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    store_setup(sqlite_engine)
    endpoint = register(client, receiver, ["store.*"])
    receiver.status = 503  # the store's tablet is offline
    assert alert(sqlite_engine, arrival("enter", "v1")) == "alerted"
    pump(sqlite_engine)
    assert receiver.accepted == [] and len(receiver.attempts) == 1
    with Session(sqlite_engine) as s:
        record_consent(s, customer_id="cust1", purpose="store_welcome", granted=False, source="app_screen",
                       at=T0 + timedelta(minutes=1))
        s.commit()
    assert alert(sqlite_engine, arrival("enter", "v2"), at=T0 + timedelta(minutes=2)) == "no_consent"
    receiver.status = 200
    with Session(sqlite_engine) as s:  # the retry comes due
        s.execute(update(WebhookDeliveryRow).values(next_attempt_at=T0))
        s.commit()
    pump(sqlite_engine)
    assert receiver.accepted == []
    with Session(sqlite_engine) as s:
        theirs = select(WebhookDeliveryRow).where(WebhookDeliveryRow.endpoint_id == endpoint)
        row = s.execute(theirs).scalar_one()
    assert row.status == "cancelled" and "withdrawn" in (row.last_error or "")


def test_erasure_removes_store_events_naming_the_customer_and_says_opted_out_with_the_opaque_id_only(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    store_setup(sqlite_engine)
    register(client, receiver, ["store.*", "customer.*", "consent.*"])
    assert alert(sqlite_engine, arrival("enter", "v1")) == "alerted"
    with Session(sqlite_engine) as s:
        erase_customer(s, "cust1", at=T0, location=SqlLocationData())
        s.commit()
        left = list(s.execute(select(OutboundEventRow)).scalars())
    assert [(e.type, e.payload) for e in left] == [
        ("customer.opted_out", {"customer_id": "cust1", "channels": ["push", "sms"], "reason": "erasure"})
    ]
    pump(sqlite_engine)
    assert types_of(receiver) == ["customer.opted_out"]  # the arrival (first name) never left


# -- the target pinned to the address checked ---------------------------------------------------------
def test_each_attempt_resolves_once_and_connects_to_the_checked_address_with_the_host_kept(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    answer = client.post(
        "/v1/admin/webhooks",
        json={"url": f"http://crm.shop.test:{port}/hooks", "event_types": ["consent.changed"]},
    )
    receiver.secret = answer.json()["secret"]
    asked: list[str] = []

    def rebinding(host: str, port_: int) -> list[str]:  # "crm.shop.test" exists in no real DNS
        asked.append(host)
        return ["127.0.0.1"]

    with Session(sqlite_engine) as s:
        add_customer(s, T0)
        record_consent(s, customer_id="cust1", purpose="sms_marketing", granted=False, source="api", at=T0)
        s.commit()
    pump(sqlite_engine, resolve=rebinding)
    assert asked == ["crm.shop.test"]  # once, for the one attempt; the client did not resolve again
    assert [r.host for r in receiver.accepted] == [f"crm.shop.test:{port}"]


def test_a_name_resolving_to_a_private_address_is_refused_and_nothing_connects(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    port = receiver.url.split(":")[2].split("/")[0]
    target, why = resolve_target(f"https://crm.shop.test:{port}/h", allow_private=False,
                                 resolve=lambda h, p: ["93.184.216.34", "127.0.0.1"])
    assert target is None and why is not None and "127.0.0.1" in why
    target, why = resolve_target("https://crm.shop.test/h?x=1", allow_private=False,
                                 resolve=lambda h, p: ["93.184.216.34"])
    assert why is None and target == pin("https://crm.shop.test/h?x=1", "93.184.216.34")
    assert target.url == "https://93.184.216.34/h?x=1"
    assert target.headers == {"host": "crm.shop.test"}
    assert target.extensions == {"sni_hostname": "crm.shop.test"}  # TLS: server name and certificate
    assert pin("http://[2001:db8::1]:8080/x", "2001:db8::1").url == "http://[2001:db8::1]:8080/x"
    assert pin("https://h.test:8443/x", "2606:4700::1").url == "https://[2606:4700::1]:8443/x"


# -- metrics -----------------------------------------------------------------------------------------
def test_metrics_show_attempts_pending_parked_and_the_oldest_pending_age_per_endpoint(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["consent.*"])
    receiver.status = 500
    with Session(sqlite_engine) as s:
        add_customer(s, T0)
        record_consent(s, customer_id="cust1", purpose="sms_marketing", granted=False, source="api", at=T0)
        s.commit()
    pump(sqlite_engine)
    text = client.get("/metrics").text
    assert f'geofence_webhook_attempts_total{{endpoint="{endpoint}",outcome="failed"}} 1.0' in text
    assert f'geofence_webhook_messages{{endpoint="{endpoint}",status="pending"}} 1.0' in text
    assert f'geofence_webhook_messages{{endpoint="{endpoint}",status="parked"}} 0.0' in text
    age = next(line for line in text.splitlines()
               if line.startswith(f'geofence_webhook_oldest_pending_age_seconds{{endpoint="{endpoint}"}}'))
    assert float(age.split()[-1]) >= 0.0


def test_store_welcome_alone_lets_positions_in_for_arrivals_but_no_marketing_purpose_does(
    sqlite_engine: Engine,
) -> None:
    from campaigns.customers import location_consented_devices

    with Session(sqlite_engine) as s:
        add_customer(s, T0, consents=("store_welcome",))
        add_customer(s, T0, cid="cust2", device_id="dev2", consents=("push_marketing", "sms_marketing"))
        add_customer(s, T0, cid="cust3", device_id="dev3", consents=("location_offers",))
        assert location_consented_devices(s, ["dev1", "dev2", "dev3"], at=T0) == {"dev1", "dev3"}


def test_the_worker_loops_alert_the_store_within_seconds_of_a_fix(
    engine: Engine, settings: Settings, receiver: Receiver
) -> None:
    """The wiring, SQLite and PostgreSQL: a fix inside a store's zone -> zone event -> the
    ``store_arrivals`` consumer (woken by the event) -> the relay (woken by the consumer) -> the sender;
    the location gate lets the fix in on ``store_welcome`` alone."""
    import time

    from geofence.service.loops import start_loops
    from geofence.service.runtime import bootstrap
    from tests.geofence.tracks import STORE, fix
    from zones.model import Circle, Zone

    hooks = settings.model_copy(update={"webhooks": WebhookSettings(allow_private_targets=True)})
    runtime = bootstrap(hooks, engine)
    with TestClient(create_app(runtime=runtime, run_jobs=False)) as c:
        register(c, receiver, ["store.customer_arrived"], zones=["store"])
    with Session(engine) as s:
        add_customer(s, T0, device_id="dev-1", consents=("store_welcome",), locale="fr")
    service = runtime.geofence
    service.save_zones([Zone("store", "Store", Circle(STORE[0], STORE[1], 60), store_id="S1")], at=T0)
    loops = start_loops(runtime.loops, ("worker",), engine=engine, wakeups=runtime.wakeups)
    try:
        time.sleep(0.2)
        inside = fix(0, 0, 60)
        (event,) = service.ingest([inside], at=inside.recorded_at).events
        deadline = time.monotonic() + 10
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loops.stop()
    assert receiver.bad_signatures == 0
    assert [r.body["type"] for r in receiver.accepted] == ["store.customer_arrived"]
    data = receiver.accepted[0].body["data"]
    assert data == {**data, "store_id": "S1", "zone_id": event.zone_id, "first_name": "Ana", "language": "fr"}


def test_the_store_side_log_is_purged_past_retention_once_relayed_and_sent_and_the_job_runs_in_the_worker(
    settings: Settings, sqlite_engine: Engine, receiver: Receiver
) -> None:
    from campaigns.storage.outbound_events import emit
    from geofence.service.runtime import jobs_for
    from geofence.service.webhook_store_events import purge_store_events

    def log_ids() -> list[str]:
        with Session(sqlite_engine) as s:
            return sorted(s.execute(select(col(OutboundEventRow.subject_id))).scalars())

    def add(subject: str, at: datetime) -> None:
        with Session(sqlite_engine) as s:
            payload = {"purpose": "store_welcome", "granted": True}
            emit(s, "consent.changed", payload, subject_id=subject, occurred_at=at)
            s.commit()

    old, recent = T0 - timedelta(days=40), T0 - timedelta(days=2)
    add("old-no-relay", old)
    add("recent", recent)
    with Session(sqlite_engine) as s:  # no relay has run yet (no cursor): age alone decides
        assert purge_store_events(s, before=T0 - timedelta(days=30)) == 1
        s.commit()
    assert log_ids() == ["recent"]
    hooks = settings.model_copy(update={"webhooks": WebhookSettings(allow_private_targets=True)})
    with TestClient(create_app(hooks, engine=sqlite_engine, run_jobs=False)) as c:
        register(c, receiver, ["consent.changed"])
    StoreEventRelay(sqlite_engine, now=now).run_once()  # the relay's cursor now exists, past "recent"
    add("old-not-relayed", old)  # numbered after the cursor: not passed yet
    with Session(sqlite_engine) as s:
        assert purge_store_events(s, before=T0 - timedelta(days=30)) == 0
        s.commit()
    StoreEventRelay(sqlite_engine, now=now).run_once()  # relayed, its message pending (receiver not run)
    with Session(sqlite_engine) as s:
        assert purge_store_events(s, before=T0 - timedelta(days=30)) == 0  # its message still waits
        s.commit()
    pump(sqlite_engine)
    assert "consent.changed" in types_of(receiver)
    with Session(sqlite_engine) as s:
        assert purge_store_events(s, before=T0 - timedelta(days=30)) == 1
        s.commit()
    assert log_ids() == ["recent"]
    for i in range(5):
        add(f"old-{i}", old)
    StoreEventRelay(sqlite_engine, now=now).run_once()
    pump(sqlite_engine)
    with Session(sqlite_engine) as s:  # two at a time, each chunk committed, until a short one
        assert purge_store_events(s, before=T0 - timedelta(days=30), chunk=2) == 5
    assert log_ids() == ["recent"]
    (job,) = [j for j in jobs_for(settings) if j.id == "webhooks.purge_store_events"]
    assert job.role == "worker"
