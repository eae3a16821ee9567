"""The mobile app API: device registration, token refresh, consent from the app, cadence."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from campaigns import customers as uc
from geofence.service import apikeys
from geofence.service.db import session_scope
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import CANCELLED, DEFERRED, PENDING, SENT, Delivery
from geofence.service.tables.customers import ConsentEvent, Customer, Device
from tests.service.consent_helpers import build_app

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
TOKEN = "fcm-registration-token-" + "Q" * 140
WORDING = {
    "wording": "Recevoir des offres quand je suis près d'un magasin ?",
    "wording_version": "loc-2026-01",
}


@pytest.fixture
def app_and_key(engine, tmp_path):
    settings = Settings(
        env="test", hash_key="test-hash-key-not-secret", public_base_url="http://127.0.0.1:8000",
        database_url=str(engine.url),
        outbox_dir=tmp_path / "outbox",
        export_dir=tmp_path / "exports",
        scheduler={"enabled": False},
        auth_required=True,
        migrate_on_start=False,
        limits={"device_rate_per_s": 0, "key_rate_per_s": 0},
    )
    app = build_app(settings, engine)
    with session_scope(engine) as s:
        _, key = apikeys.create_api_key(s, name="android app", scopes={"ingest"}, at=AT)
    with TestClient(app, headers={"Authorization": f"Bearer {key}"}) as client:
        yield app, client


@pytest.fixture
def client(app_and_key):
    return app_and_key[1]


def register(client, device_id="dev-1", **extra):
    body = {
        "device_id": device_id,
        "platform": "android",
        "push_token": TOKEN,
        "app_version": "3.2.0",
        **extra,
    }
    response = client.post("/v1/devices", json=body)
    assert response.status_code == 200, response.text
    DEVICE_TOKENS[id(client), device_id] = response.json()["device_token"]
    return response.json()


DEVICE_TOKENS: dict[tuple[int, str], str] = {}


def bound(client, device_id="dev-1"):
    """Headers proving ``device_id`` (its credential from ``register``), sent with the client's ingest key."""
    return {"X-Device-Token": DEVICE_TOKENS[id(client), device_id]}


def consent(client, device_id, purpose, granted, headers=None, **extra):
    return client.post(
        f"/v1/devices/{device_id}/consents",
        json={"purpose": purpose, "granted": granted, **WORDING, **extra},
        headers=headers if headers is not None else bound(client, device_id),
    )


def test_registration_creates_a_customer_and_issues_a_device_credential_once(client, engine, caplog):
    caplog.set_level(logging.INFO)
    first = register(client, locale="en-GB", tz="Europe/London", country="GB")
    assert first["created"] is True and first["device_token"].startswith("gfd_")
    with Session(engine) as s:
        device = s.get(Device, "dev-1")
        assert device.push_token == TOKEN and device.app_version == "3.2.0"
        customer = s.get(Customer, first["customer_id"])
        assert (customer.locale, customer.tz, customer.country) == ("en-GB", "Europe/London", "GB")
    bound = {"X-Device-Token": first["device_token"]}
    again = client.post(
        "/v1/devices", json={"device_id": "dev-1", "platform": "android"}, headers=bound
    ).json()
    assert again["created"] is False and again["customer_id"] == first["customer_id"]
    assert again["device_token"] is None  # a device-bound caller keeps its credential
    takeover = client.post("/v1/devices", json={"device_id": "dev-1", "platform": "ios"})
    assert takeover.status_code == 409  # the shared app key alone cannot re-register a known device
    assert TOKEN not in caplog.text


def test_a_device_credential_may_only_act_for_its_own_device(client):
    mine = register(client, "dev-mine")
    register(client, "dev-other")
    bound = {"X-Device-Token": mine["device_token"]}
    assert consent(client, "dev-other", "location_offers", True, headers=bound).status_code == 403
    assert (
        client.put("/v1/devices/dev-other/push-token", json={"push_token": "x"}, headers=bound).status_code
        == 403
    )
    assert client.put("/v1/devices/dev-other/cadence", json={}, headers=bound).status_code == 403
    taken = client.post("/v1/devices", json={"device_id": "dev-other", "platform": "ios"}, headers=bound)
    assert taken.status_code == 403
    assert consent(client, "dev-mine", "location_offers", True, headers=bound).status_code == 200


def test_consent_from_the_app_is_recorded_with_its_wording_and_drives_the_location_filter(
    app_and_key, engine
):
    app, client = app_and_key
    register(client)
    keep = app.state.runtime.geofence.location_consent
    with Session(engine) as s:
        assert keep(s, {"dev-1"}) == set()  # the OS permission alone is not consent
    response = consent(client, "dev-1", "location_offers", True)
    assert response.status_code == 200, response.text
    assert response.json()["consents"] == {
        "location_offers": True,
        "push_marketing": False,
        "sms_marketing": False,
        "store_welcome": False,
        "order_updates": False,
    }
    with Session(engine) as s:
        assert keep(s, {"dev-1", "dev-unknown"}) == {"dev-1"}
        event = s.exec(select(ConsentEvent)).one()
        assert (event.source, event.wording, event.wording_version) == (
            "app_screen",
            WORDING["wording"],
            "loc-2026-01",
        )
        assert event.recorded_by == "device:dev-1" and event.evidence["device_id"] == "dev-1"
    assert consent(client, "dev-1", "location_offers", False).status_code == 200
    with Session(engine) as s:
        assert keep(s, {"dev-1"}) == set()
        assert len(s.exec(select(ConsentEvent)).all()) == 2  # appended, never rewritten


def _queue(engine, customer_id):
    with session_scope(engine) as s:
        for channel in ("push", "sms"):
            for status in (PENDING, DEFERRED, SENT):
                s.add(
                    Delivery(
                        idempotency_key=f"{channel}-{status}",
                        customer_id=customer_id,
                        channel=channel,
                        status=status,
                        due_at=AT,
                        created_at=AT,
                    )
                )


def _statuses(engine):
    with Session(engine) as s:
        return {d.idempotency_key: d.status for d in s.exec(select(Delivery))}


def test_push_opt_out_from_the_app_cancels_queued_push_only(client, engine):
    customer_id = register(client)["customer_id"]
    for purpose in ("location_offers", "push_marketing"):
        consent(client, "dev-1", purpose, True)
    _queue(engine, customer_id)
    response = consent(client, "dev-1", "push_marketing", False)
    assert response.json()["cancelled_deliveries"] == 2
    assert _statuses(engine) == {
        "push-pending": CANCELLED,
        "push-deferred": CANCELLED,
        "push-sent": SENT,
        "sms-pending": PENDING,
        "sms-deferred": DEFERRED,
        "sms-sent": SENT,
    }


def test_location_withdrawal_from_the_app_cancels_queued_push_and_sms(client, engine):
    customer_id = register(client)["customer_id"]
    consent(client, "dev-1", "location_offers", True)
    _queue(engine, customer_id)
    assert consent(client, "dev-1", "location_offers", False).json()["cancelled_deliveries"] == 4
    statuses = _statuses(engine)
    assert {k: v for k, v in statuses.items() if not k.endswith("sent")} == {
        "push-pending": CANCELLED,
        "push-deferred": CANCELLED,
        "sms-pending": CANCELLED,
        "sms-deferred": CANCELLED,
    }
    with Session(engine) as s:
        reasons = {d.reason for d in s.exec(select(Delivery)) if d.status == CANCELLED}
    assert reasons == {"consent_withdrawn:location_offers"}


def test_token_refresh_and_cadence(client, engine):
    customer_id = register(client)["customer_id"]
    with session_scope(engine) as s:
        s.get(Device, "dev-1").push_token_active = False
    assert client.put(
        "/v1/devices/dev-1/push-token", json={"push_token": "new-token"}, headers=bound(client)
    ).status_code == 200
    cadence = client.put(
        "/v1/devices/dev-1/cadence", json={"max_offers_per_day": 1, "max_offers_per_week": 3},
        headers=bound(client),
    )
    assert cadence.status_code == 200
    with Session(engine) as s:
        device = s.get(Device, "dev-1")
        assert device.push_token == "new-token" and device.push_token_active is True
        customer = s.get(Customer, customer_id)
        assert (customer.max_offers_per_day, customer.max_offers_per_week) == (1, 3)


BAD_INPUTS = [
    ("post", "/v1/devices", {"device_id": "d", "platform": "windows"}, 422),
    ("post", "/v1/devices", {"device_id": "bad id/../", "platform": "ios"}, 422),
    ("post", "/v1/devices", {"device_id": "d", "platform": "ios", "customer_id": "nobody"}, 403),
    ("post", "/v1/devices", {"device_id": "d", "platform": "ios", "tz": "Moon/Base"}, 422),
    ("put", "/v1/devices/unknown/push-token", {"push_token": "t"}, 403),  # not this device's token
    (
        "post",
        "/v1/devices/unknown/consents",
        {"purpose": "location_offers", "granted": True, **WORDING},
        403,
    ),
    ("post", "/v1/devices/dev-1/consents", {"purpose": "newsletter", "granted": True, **WORDING}, 422),
    ("post", "/v1/devices/dev-1/consents", {"purpose": "location_offers", "granted": True}, 422),
    (
        "post",
        "/v1/devices/dev-1/consents",
        {"purpose": "push_marketing", "granted": True, "occurred_at": "2026-01-01T10:00:00", **WORDING},
        422,
    ),
    (
        "post",
        "/v1/devices/dev-1/consents",
        {"purpose": "push_marketing", "granted": True, "occurred_at": "2999-01-01T10:00:00Z", **WORDING},
        422,
    ),
    ("put", "/v1/devices/dev-1/cadence", {"max_offers_per_day": -1}, 422),
    ("put", "/v1/devices/dev-1/cadence", {"max_offers_per_day": 5, "max_offers_per_week": 2}, 422),
]


def test_bad_input_is_a_4xx_with_a_reason(client, engine):
    register(client)
    for method, path, body, status in BAD_INPUTS:
        headers = bound(client) if path.startswith("/v1/devices/") else {}
        response = getattr(client, method)(path, json=body, headers=headers)
        assert response.status_code == status, (path, body, response.text)
        assert response.json()["detail"]
    with Session(engine) as s:
        assert s.get(Device, "d") is None


def test_the_app_key_alone_cannot_act_for_a_device(client, engine):
    register(client)
    assert "x-device-token" not in client.headers  # the client's ingest key, no device credential
    for method, path, body in [
        ("post", "/v1/devices/dev-1/consents", {"purpose": "sms_marketing", "granted": True, **WORDING}),
        ("get", "/v1/devices/dev-1/consents", None),
        ("put", "/v1/devices/dev-1/cadence", {"max_offers_per_day": 9}),
        ("put", "/v1/devices/dev-1/push-token", {"push_token": "attacker"}),
    ]:
        kwargs = {"json": body} if body is not None else {}
        response = client.request(method.upper(), path, **kwargs)
        assert response.status_code == 403 and "X-Device-Token" in response.json()["detail"], path
    with Session(engine) as s:
        assert s.exec(select(ConsentEvent)).all() == []
        assert s.get(Device, "dev-1").push_token == TOKEN


def test_sms_grant_from_the_app_is_refused_after_an_sms_stop(client, engine):
    customer_id = register(client)["customer_id"]
    with session_scope(engine) as s:
        customer = s.get(Customer, customer_id)
        customer.phone_hash = "h" * 64
        uc.suppress(s, "h" * 64, reason=uc.SUPPRESSED_BY_KEYWORD, at=AT - timedelta(days=1))
    response = consent(client, "dev-1", "sms_marketing", True)
    assert response.status_code == 409 and "START" in response.json()["detail"]
