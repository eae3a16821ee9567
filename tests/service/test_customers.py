"""Customers, the consent ledger, opt-out effects, access export and erasure — on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select

from campaigns import customers as uc
from campaigns.consent import Purpose, Source
from campaigns.privacy import erase_customer, export_customer
from geofence.service import apikeys
from geofence.service.db import session_scope
from geofence.service.location_data import SqlLocationData
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import CANCELLED, DEFERRED, PENDING, SENT, Delivery
from geofence.service.tables.customers import ConsentEvent, Customer, Device, Suppression
from geofence.service.tables.presence import LocationFixRow, PresenceHeadRow, PresenceRow, ZoneEventRow
from geofence.service.wiring.campaigns import location_consent_filter
from tests.service.consent_helpers import build_app

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = "test-hash-key"
PHONE = "+33612345678"


def make_customer(session, crm_id="crm-1", phone="06 12 34 56 78", **kw):
    customer, _ = uc.upsert_customer(
        session, uc.CustomerInput(crm_id=crm_id, phone=phone, first_name="Ann", **kw), at=AT, hash_key=KEY
    )
    return customer


def grant(session, customer_id, *purposes, at=AT):
    for purpose in purposes:
        uc.record_consent(
            session,
            customer_id=customer_id,
            purpose=purpose,
            granted=True,
            source=Source.APP_SCREEN,
            at=at,
            wording="Offers near stores?",
            wording_version="v1",
        )


def add_delivery(session, customer_id, channel, status, device_id=None):
    row = Delivery(
        idempotency_key=f"{customer_id}:{channel}:{status}:{device_id}",
        customer_id=customer_id,
        device_id=device_id,
        channel=channel,
        status=status,
        due_at=AT,
        created_at=AT,
        title="Hi Ann",
        body="Coffee for Ann",
        data={"first_name": "Ann"},
    )
    session.add(row)
    session.flush()
    return row.id


def statuses(session):
    session.expire_all()
    return {(d.channel, d.idempotency_key.split(":")[2]): d.status for d in session.exec(select(Delivery))}


# --- customers -----------------------------------------------------------------------------------


def test_upsert_validates_the_phone_and_stores_e164_with_its_keyed_hash(session):
    customer = make_customer(session)
    session.commit()
    assert customer.phone_e164 == PHONE
    assert customer.phone_hash and PHONE not in customer.phone_hash
    again, created = uc.upsert_customer(
        session, uc.CustomerInput(crm_id="crm-1", first_name="Anne"), at=AT, hash_key=KEY
    )
    assert not created and again.id == customer.id and again.first_name == "Anne"
    assert again.phone_e164 == PHONE  # None leaves a field unchanged


BAD_FIELDS = [
    (uc.CustomerInput(phone="12"), "not a valid"),
    (uc.CustomerInput(tz="Mars/Olympus"), "time zone"),
    (uc.CustomerInput(country="XX"), "country"),
    (uc.CustomerInput(locale="french!"), "locale"),
    (uc.CustomerInput(attributes={"a": [1]}), "attribute"),
    (uc.CustomerInput(first_name="x" * 101), "first_name"),
    (uc.CustomerInput(first_name="\ud800"), "Unicode"),
    (uc.CustomerInput(crm_id="a\x00"), "NUL"),
    (uc.CustomerInput(attributes={"score": float("nan")}), "finite"),
]


def test_bad_customer_fields_are_refused_with_a_reason(session):
    for data, reason in BAD_FIELDS:
        with pytest.raises(uc.CustomerError, match=reason):
            uc.upsert_customer(session, data, at=AT, hash_key=KEY)


def test_crm_id_cannot_be_taken_from_another_customer(session):
    make_customer(session, crm_id="a", phone=None)
    b = make_customer(session, crm_id="b", phone=None)
    with pytest.raises(uc.CustomerError, match="another customer"):
        uc.upsert_customer(session, uc.CustomerInput(crm_id="a"), at=AT, hash_key=KEY, customer_id=b.id)


def test_cadence_is_stored_and_checked(session):
    customer = make_customer(session)
    uc.set_cadence(session, customer.id, per_day=1, per_week=3, at=AT)
    session.commit()
    session.expire_all()
    stored = session.get(Customer, customer.id)
    assert (stored.max_offers_per_day, stored.max_offers_per_week) == (1, 3)
    with pytest.raises(uc.CustomerError, match="cannot exceed"):
        uc.set_cadence(session, customer.id, per_day=5, per_week=2, at=AT)


# --- ledger --------------------------------------------------------------------------------------


def test_ledger_is_append_only_and_state_is_derived_from_it(session):
    customer = make_customer(session)
    grant(session, customer.id, Purpose.SMS_MARKETING)
    first = session.exec(select(ConsentEvent)).one().model_dump()
    uc.record_consent(
        session,
        customer_id=customer.id,
        purpose="sms_marketing",
        granted=False,
        source="api",
        at=AT + timedelta(hours=1),
        recorded_by="crm-sync",
        evidence={"ticket": "T-1"},
    )
    session.commit()
    session.expire_all()
    rows = uc.ledger(session, customer.id)
    assert [(r.granted, r.source, r.seq) for r in rows] == [(True, "app_screen", 1), (False, "api", 2)]
    assert rows[0].model_dump() == first  # history is never rewritten
    assert rows[0].wording == "Offers near stores?" and rows[0].wording_version == "v1"
    assert rows[1].recorded_by == "crm-sync" and rows[1].evidence == {"ticket": "T-1"}
    assert uc.current_consent(session, customer.id, at=AT + timedelta(minutes=30))[Purpose.SMS_MARKETING]
    assert not uc.current_consent(session, customer.id, at=AT + timedelta(hours=2))[Purpose.SMS_MARKETING]


def test_consent_in_the_future_or_with_an_unknown_purpose_is_refused(session):
    customer = make_customer(session)
    with pytest.raises(uc.CustomerError, match="future"):
        uc.record_consent(
            session,
            customer_id=customer.id,
            purpose="sms_marketing",
            granted=True,
            source="api",
            at=AT,
            occurred_at=AT + timedelta(hours=1),
        )
    with pytest.raises(uc.CustomerError):
        uc.record_consent(
            session, customer_id=customer.id, purpose="newsletter", granted=True, source="api", at=AT
        )
    with pytest.raises(uc.NotFound):
        uc.record_consent(
            session, customer_id="nobody", purpose="sms_marketing", granted=True, source="api", at=AT
        )


WITHDRAWAL_CANCELS = {
    Purpose.SMS_MARKETING: {"sms"},
    Purpose.PUSH_MARKETING: {"push"},
    Purpose.LOCATION_OFFERS: {"sms", "push"},
}


def test_withdrawal_cancels_waiting_deliveries_of_its_channels_in_the_same_transaction(session):
    other = make_customer(session, crm_id="other", phone=None)
    add_delivery(session, other.id, "sms", PENDING)
    for purpose, cancelled_channels in WITHDRAWAL_CANCELS.items():
        customer = make_customer(session, crm_id=f"crm-{purpose.value}")
        grant(session, customer.id, *Purpose)
        for channel in ("sms", "push"):
            for status in (PENDING, DEFERRED, SENT):
                add_delivery(session, customer.id, channel, status)
        session.commit()
        _, n = uc.record_consent(
            session,
            customer_id=customer.id,
            purpose=purpose,
            granted=False,
            source=Source.APP_SCREEN,
            at=AT + timedelta(minutes=1),
        )
        session.commit()
        assert n == 2 * len(cancelled_channels), purpose
        session.expire_all()
        for row in session.exec(select(Delivery).where(Delivery.customer_id == customer.id)):
            original = row.idempotency_key.split(":")[2]
            cancelled = original in (PENDING, DEFERRED) and row.channel in cancelled_channels
            assert row.status == (CANCELLED if cancelled else original), (purpose, row.idempotency_key)
            if cancelled:
                assert row.reason == f"consent_withdrawn:{purpose.value}"
    other_row = session.exec(select(Delivery).where(Delivery.customer_id == other.id)).one()
    assert other_row.status == PENDING


def test_sms_grant_is_refused_while_the_number_is_suppressed(session):
    customer = make_customer(session)
    uc.suppress(session, customer.phone_hash, reason=uc.SUPPRESSED_BY_KEYWORD, at=AT)
    with pytest.raises(uc.Suppressed, match="START"):
        grant(session, customer.id, Purpose.SMS_MARKETING)
    grant(session, customer.id, Purpose.PUSH_MARKETING)  # other purposes are unaffected


# --- location consent filter (used by the location feed) -----------------------------------------


def test_location_consent_filter_keeps_only_devices_with_location_offers_now(engine, settings):
    keep = location_consent_filter
    with session_scope(engine) as session:
        yes = make_customer(session, crm_id="yes", phone=None)
        push_only = make_customer(session, crm_id="push", phone=None)
        withdrawn = make_customer(session, crm_id="gone", phone=None)
        for cust, dev in ((yes, "d-yes"), (yes, "d-yes-2"), (push_only, "d-push"), (withdrawn, "d-gone")):
            uc.register_device(session, device_id=dev, platform="ios", at=AT, customer_id=cust.id)
        uc.register_device(session, device_id="d-orphan", platform="android", at=AT)
        grant(session, yes.id, Purpose.LOCATION_OFFERS)
        grant(session, push_only.id, Purpose.PUSH_MARKETING)
        grant(session, withdrawn.id, Purpose.LOCATION_OFFERS)
        uc.record_consent(
            session,
            customer_id=withdrawn.id,
            purpose="location_offers",
            granted=False,
            source="app_screen",
            at=AT + timedelta(seconds=1),
        )
    with session_scope(engine) as session:
        asked = {"d-yes", "d-yes-2", "d-push", "d-gone", "d-orphan", "d-unknown"}
        assert keep(session, asked) == {"d-yes", "d-yes-2"}
        assert keep(session, set()) == set()


# --- access and erasure --------------------------------------------------------------------------


def _populate(session):
    customer = make_customer(session, attributes={"tier": "gold"})
    uc.register_device(
        session,
        device_id="dev-1",
        platform="android",
        at=AT,
        customer_id=customer.id,
        push_token="fcm-secret-token-" + "x" * 120,
    )
    grant(session, customer.id, *Purpose)
    add_delivery(session, customer.id, "push", SENT, device_id="dev-1")
    add_delivery(session, customer.id, "sms", PENDING)
    session.add(
        ZoneEventRow(
            id="ev-1",
            zone_id="z1",
            device_id="dev-1",
            customer_id=None,
            kind="enter",
            at=AT,
            visit_id="v1",
            reason="inside",
            lat=48.857,
            lng=2.352,
        )
    )
    session.add(
        ZoneEventRow(
            id="ev-2",
            zone_id="z1",
            device_id=None,
            customer_id=customer.id,
            kind="exit",
            at=AT + timedelta(minutes=9),
            visit_id="v1",
            reason="outside",
        )
    )
    session.add(
        PresenceRow(device_id="dev-1", zone_id="z1", state="inside", visit_id="v9", lat=48.857, lng=2.35)
    )
    session.add(PresenceHeadRow(device_id="dev-1", version=4, last_fix_at=AT))
    session.add(
        LocationFixRow(
            device_id="dev-1", lat=48.85712, lng=2.35234, accuracy_m=12.0, recorded_at=AT, received_at=AT
        )
    )
    session.add(
        ZoneEventRow(
            id="ev-3",
            zone_id="z1",
            device_id="someone-else",
            kind="enter",
            at=AT,
            visit_id="v2",
            reason="inside",
        )
    )
    session.commit()
    return customer


def test_access_export_holds_everything_with_tokens_masked(session):
    customer = _populate(session)
    data = export_customer(session, customer.id, at=AT, location=SqlLocationData())
    assert data["customer"]["phone_e164"] == PHONE and data["customer"]["attributes"] == {"tier": "gold"}
    assert data["consent_state"] == {p.value: True for p in Purpose}
    assert len(data["consent_ledger"]) == len(Purpose)
    assert [d["id"] for d in data["devices"]] == ["dev-1"]
    assert "fcm-secret-token-" + "x" * 120 not in str(data)
    assert data["devices"][0]["push_token"].startswith("fcm-se")
    assert sorted(e["id"] for e in data["zone_events"]) == ["ev-1", "ev-2"]
    assert len(data["deliveries"]) == 2
    assert [p["zone_id"] for p in data["presences"]] == ["z1"]
    assert [f["lat"] for f in data["location_fixes"]] == [48.85712]
    assert "credential_hash" not in data["devices"][0] and "phone_hash" not in data["customer"]


def test_erasure_removes_personal_data_keeps_the_ledger_and_suppresses_the_number(session):
    customer = _populate(session)
    phone_hash = customer.phone_hash
    counts = erase_customer(
        session, customer.id, at=AT + timedelta(days=1), location=SqlLocationData(), recorded_by="dpo"
    )
    session.commit()
    session.expire_all()
    erased = session.get(Customer, customer.id)
    assert erased.erased_at is not None
    assert (erased.phone_e164, erased.phone_hash, erased.first_name, erased.crm_id, erased.attributes) == (
        None,
        None,
        None,
        None,
        {},
    )
    assert session.exec(select(Device)).all() == []
    assert session.exec(select(PresenceRow)).all() == []
    assert session.exec(select(PresenceHeadRow)).all() == []
    assert session.exec(select(LocationFixRow)).all() == []
    events = {e.id: e for e in session.exec(select(ZoneEventRow))}
    assert (events["ev-1"].device_id, events["ev-1"].customer_id) == (None, None)
    assert (events["ev-2"].device_id, events["ev-2"].customer_id) == (None, None)
    assert events["ev-3"].device_id == "someone-else"
    for delivery in session.exec(select(Delivery)):
        assert (delivery.customer_id, delivery.device_id, delivery.body, delivery.title) == (
            None,
            None,
            None,
            None,
        )
        assert delivery.data == {}
    statuses = sorted(d.status for d in session.exec(select(Delivery)))
    assert statuses == [CANCELLED, SENT]
    ledger = uc.ledger(session, customer.id)
    assert len(ledger) == 2 * len(Purpose)  # the grants kept + a withdrawal of each appended
    assert not any(uc.current_consent(session, customer.id, at=AT + timedelta(days=2)).values())
    suppression = session.get(Suppression, (phone_hash, "sms"))
    assert suppression is not None and suppression.reason == uc.SUPPRESSED_BY_ERASURE
    assert counts["devices"] == 1 and counts["zone_events"] == 2 and counts["withdrawn"] == len(Purpose)
    with pytest.raises(uc.NotFound):
        erase_customer(session, customer.id, at=AT, location=SqlLocationData())


def test_erasure_suppression_is_never_downgraded_by_a_later_stop(session):
    customer = _populate(session)
    phone_hash = customer.phone_hash
    erase_customer(session, customer.id, at=AT, location=SqlLocationData())
    uc.suppress(session, phone_hash, reason=uc.SUPPRESSED_BY_KEYWORD, at=AT)
    assert not uc.lift_keyword_suppression(session, phone_hash)
    assert session.get(Suppression, (phone_hash, "sms")).reason == uc.SUPPRESSED_BY_ERASURE


# --- admin API -----------------------------------------------------------------------------------


def make_client(engine, tmp_path, *, auth=False):
    settings = Settings(
        env="test",
        database_url=str(engine.url),
        outbox_dir=tmp_path / "outbox",
        export_dir=tmp_path / "x",
        scheduler={"enabled": False},
        auth_required=auth,
        migrate_on_start=False,
        hash_key=KEY,
        twilio={"auth_token": "twilio-test-token"},
        public_base_url="https://engine.example.test",
    )
    return TestClient(build_app(settings, engine))


@pytest.fixture
def api(engine, tmp_path):
    with make_client(engine, tmp_path) as client:
        yield client


def test_admin_crud_pagination_and_errors(api):
    created = api.post(
        "/v1/customers",
        json={
            "crm_id": "c1",
            "phone": "06 12 34 56 78",
            "first_name": "Ann",
            "attributes": {"tier": "gold"},
            "max_offers_per_day": 2,
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["phone_e164"] == PHONE and body["max_offers_per_day"] == 2
    for i in range(2, 6):
        assert api.post("/v1/customers", json={"crm_id": f"c{i}"}).status_code == 201
    page = api.get("/v1/customers", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen = [c["id"] for c in page["items"]]
    while page["next_cursor"]:
        page = api.get("/v1/customers", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        seen += [c["id"] for c in page["items"]]
    assert len(seen) == len(set(seen)) == 5
    patched = api.patch(f"/v1/customers/{body['id']}", json={"first_name": "Anne", "tz": "America/New_York"})
    assert patched.status_code == 200 and patched.json()["first_name"] == "Anne"
    assert api.get(f"/v1/customers/{body['id']}").json()["tz"] == "America/New_York"
    assert api.get("/v1/customers/nope").status_code == 404
    bad = api.post("/v1/customers", json={"crm_id": "c9", "phone": "0000"})
    assert bad.status_code == 422 and "phone" in bad.json()["detail"]
    assert api.post("/v1/customers", json={"crm_id": "c9", "tz": "Nowhere/City"}).status_code == 422
    assert api.post("/v1/customers", json={"unknown_field": 1}).status_code == 422
    assert api.get("/v1/customers", params={"cursor": "garbage!"}).status_code == 400


def test_admin_consent_history_export_and_erase_over_http(api, engine):
    cid = api.post("/v1/customers", json={"crm_id": "c1", "phone": PHONE}).json()["id"]
    r = api.post(
        f"/v1/customers/{cid}/consents",
        json={
            "purpose": "sms_marketing",
            "granted": True,
            "source": "api",
            "wording": "w",
            "wording_version": "3",
        },
    )
    assert r.status_code == 201, r.text
    assert (
        api.post(
            f"/v1/customers/{cid}/consents",
            json={"purpose": "sms_marketing", "granted": True, "source": "sms_keyword"},
        ).status_code
        == 422
    )
    history = api.get(f"/v1/customers/{cid}/consents").json()
    assert history["consents"]["sms_marketing"] is True
    assert [e["source"] for e in history["ledger"]] == ["api"]
    export = api.get(f"/v1/customers/{cid}/export").json()
    assert export["customer"]["id"] == cid and len(export["consent_ledger"]) == 1
    erased = api.delete(f"/v1/customers/{cid}")
    assert erased.status_code == 200 and erased.json()["erased"] is True
    assert api.delete(f"/v1/customers/{cid}").status_code == 404
    assert api.get("/v1/customers").json()["items"] == []
    assert api.get("/v1/customers", params={"include_erased": True}).json()["items"][0]["phone_e164"] is None
    again = api.post("/v1/customers", json={"crm_id": "c1-new", "phone": PHONE}).json()["id"]
    refused = api.post(f"/v1/customers/{again}/consents", json={"purpose": "sms_marketing", "granted": True})
    assert refused.status_code == 409 and "erased" in refused.json()["detail"]


def test_admin_routes_need_an_admin_key(engine, tmp_path):
    with make_client(engine, tmp_path, auth=True) as client:
        assert client.get("/v1/customers").status_code == 401
        with session_scope(engine) as s:
            _, ingest = apikeys.create_api_key(s, name="app", scopes={"ingest"}, at=AT)
            _, admin = apikeys.create_api_key(s, name="crm", scopes={"admin"}, at=AT)
        assert client.get("/v1/customers", headers={"X-API-Key": ingest}).status_code == 403
        assert client.get("/v1/customers", headers={"X-API-Key": admin}).status_code == 200


ODD = ["\x00", "a\x00b", "😀" * 70, " ", "%00", "../../etc/passwd", "' OR 1=1 --", "x" * 5000]


def send(client, method, url, payload):
    """JSON with ASCII escapes, so lone surrogates reach the server as a real client could send them."""
    content = json.dumps(payload, ensure_ascii=True)
    return client.request(method, url, content=content, headers={"Content-Type": "application/json"})


def test_odd_text_anywhere_is_a_4xx_never_a_500(api):
    cid = api.post("/v1/customers", json={"crm_id": "base"}).json()["id"]
    for odd in ODD:
        for field in ("crm_id", "phone", "first_name", "locale", "tz", "country", "subdivision"):
            r = send(api, "post", "/v1/customers", {field: odd})
            assert r.status_code in (201, 422), (field, odd, r.text)
        r = send(api, "patch", f"/v1/customers/{cid}", {"attributes": {odd[:64] or "k": odd}})
        assert r.status_code in (200, 422), (odd, r.text)
        r = send(
            api,
            "post",
            f"/v1/customers/{cid}/consents",
            {"purpose": "push_marketing", "granted": True, "wording": odd, "evidence": {"k": odd}},
        )
        assert r.status_code in (201, 422), (odd, r.text)
        assert api.get(f"/v1/customers/{quote(odd[:60], safe='')}").status_code in (404, 422)
        r = send(api, "post", "/v1/devices", {"device_id": "d1", "platform": "ios", "push_token": odd})
        assert r.status_code in (200, 422), (odd, r.text)
    r = api.post(
        f"/v1/customers/{cid}/consents",
        json={"purpose": "push_marketing", "granted": True, "occurred_at": "0001-01-01T00:00:00+14:00"},
    )
    assert r.status_code == 422


# --- country and time zone from the number ------------------------------------------------------


def test_a_new_customer_with_only_a_us_number_is_placed_in_the_us_and_its_time_zone(api):
    from campaigns.legal_hours import legal_schedule, recipient_zones

    us = api.post("/v1/customers", json={"crm_id": "us-1", "phone": "+1 212 555 1234"}).json()
    assert (us["country"], us["tz"]) == ("US", "America/New_York")
    # 04:00 in New York (09:00 UTC, 10:00 in Paris): no marketing SMS may go out
    zones = recipient_zones(us["tz"], "+12125551234", fallback="Europe/Paris")
    sms = legal_schedule("sms", country=us["country"], subdivision=None, zones=zones)
    assert sms is not None and not sms.is_open(datetime(2026, 11, 24, 9, 0, tzinfo=UTC))
    assert sms.is_open(datetime(2026, 11, 24, 15, 0, tzinfo=UTC))  # 10:00 in New York
    west = api.post("/v1/customers", json={"crm_id": "us-2", "phone": "+1 208 555 0100"}).json()
    assert west["tz"] == "America/Los_Angeles"  # area code 208 spans two zones: the westernmost
    overseas = api.post("/v1/customers", json={"crm_id": "gp-1", "phone": "+590 690 00 11 22"}).json()
    assert (overseas["country"], overseas["tz"]) == ("FR", "America/Guadeloupe")


def test_country_and_time_zone_given_explicitly_are_kept(api):
    given = api.post("/v1/customers",
                     json={"crm_id": "us-3", "phone": "+12125551234", "tz": "America/Chicago"})
    assert (given.json()["country"], given.json()["tz"]) == ("US", "America/Chicago")
    both = api.post("/v1/customers", json={"crm_id": "us-4", "phone": "+12125551234", "country": "CA",
                                           "tz": "America/Toronto"}).json()
    assert (both["country"], both["tz"]) == ("CA", "America/Toronto")
    french = api.post("/v1/customers", json={"crm_id": "fr-1", "phone": "06 12 34 56 78"}).json()
    assert (french["country"], french["tz"]) == ("FR", "Europe/Paris")
    nobody = api.post("/v1/customers", json={"crm_id": "none"}).json()
    assert (nobody["country"], nobody["tz"]) == ("FR", "Europe/Paris")  # the operator's defaults
