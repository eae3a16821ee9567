"""Linking a device to a customer needs proof: a link token from the retailer's back end, or an admin key.

The attack this closes: with only the app's ingest key, register a new device naming someone's
customer id, then use that device's credential to read and re-grant the customer's consents.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlmodel import select

from geofence.service import apikeys
from geofence.service.db import session_scope
from geofence.service.settings import Settings
from geofence.service.tables.customers import ConsentEvent, Device
from tests.conftest import make_key_headers
from tests.service.consent_helpers import build_app

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
WORDING = {"wording": "Recevoir des SMS ?", "wording_version": "sms-1"}


@pytest.fixture
def api(engine, tmp_path):
    settings = Settings(
        env="test", hash_key="linking-test-hash-key", public_base_url="http://127.0.0.1:8000",
        database_url=str(engine.url), outbox_dir=tmp_path / "o", export_dir=tmp_path / "e",
        scheduler={"enabled": False}, migrate_on_start=False,
        limits={"device_rate_per_s": 0, "key_rate_per_s": 0},
    )  # fmt: skip
    app = build_app(settings, engine)
    ingest = make_key_headers(engine, "ingest", name="app")
    admin = make_key_headers(engine, "admin", name="crm")
    with TestClient(app) as client:
        yield client, ingest, admin


@pytest.fixture
def victim(api):
    """A customer who withdrew SMS consent."""
    client, _, admin = api
    customer = client.post("/v1/customers", json={"crm_id": "victim"}, headers=admin).json()
    for granted in (True, False):
        r = client.post(
            f"/v1/customers/{customer['id']}/consents",
            json={"purpose": "sms_marketing", "granted": granted, "source": "admin"}, headers=admin,
        )  # fmt: skip
        assert r.status_code == 201, r.text
    return customer["id"]


def _register(client, headers, **body):
    return client.post("/v1/devices", json={"device_id": "dev-x", "platform": "ios", **body}, headers=headers)


def _ledger(engine, customer_id):
    with session_scope(engine) as s:
        rows = s.exec(select(ConsentEvent).where(ConsentEvent.customer_id == customer_id)).all()
        return [(r.purpose, r.granted) for r in rows]


def test_an_ingest_key_alone_cannot_link_a_device_to_a_customer(api, victim, engine):
    client, ingest, _ = api
    before = _ledger(engine, victim)
    r = _register(client, ingest, customer_id=victim)
    assert r.status_code == 403 and "link_token" in r.json()["detail"]
    with session_scope(engine) as s:
        assert s.get(Device, "dev-x") is None  # nothing stored
    assert _ledger(engine, victim) == before
    consents = client.get(f"/v1/customers/{victim}/consents", headers=api[2]).json()["consents"]
    assert consents["sms_marketing"] is False


def test_an_ingest_key_alone_registers_an_unlinked_device(api, victim):
    client, ingest, _ = api
    r = _register(client, ingest)
    assert r.status_code == 200 and r.json()["customer_id"] != victim


def test_a_link_token_from_the_back_end_links_the_device_to_its_customer(api, victim):
    client, ingest, admin = api
    issued = client.post(f"/v1/customers/{victim}/link-tokens", headers=admin)
    assert issued.status_code == 201, issued.text
    token = issued.json()["link_token"]
    r = _register(client, ingest, customer_id=victim, link_token=token)
    assert r.status_code == 200, r.text
    assert r.json()["customer_id"] == victim
    device = {**ingest, "X-Device-Token": r.json()["device_token"]}
    consents = client.get("/v1/devices/dev-x/consents", headers=device).json()["consents"]
    assert consents["sms_marketing"] is False
    # the token alone names the customer too
    r = _register(client, ingest, device_id="dev-y", link_token=token)
    assert r.status_code == 200 and r.json()["customer_id"] == victim


def test_a_link_token_expires(api, victim, engine):
    client, ingest, admin = api
    with freeze_time(AT):
        token = client.post(f"/v1/customers/{victim}/link-tokens", headers=admin).json()["link_token"]
    with freeze_time(AT + timedelta(seconds=599)):
        assert _register(client, ingest, device_id="in-time", link_token=token).status_code == 200
    with freeze_time(AT + timedelta(seconds=601)):
        r = _register(client, ingest, customer_id=victim, link_token=token)
        assert r.status_code == 403 and "expired" in r.json()["detail"]
    with session_scope(engine) as s:
        assert s.get(Device, "dev-x") is None


def test_a_link_token_names_one_customer_and_cannot_be_altered(api, victim):
    client, ingest, admin = api
    other = client.post("/v1/customers", json={"crm_id": "other"}, headers=admin).json()["id"]
    token = client.post(f"/v1/customers/{other}/link-tokens", headers=admin).json()["link_token"]
    assert _register(client, ingest, customer_id=victim, link_token=token).status_code == 403
    prefix, encoded, expires, signature = token[:4], *token[4:].split(".")
    forged = [
        f"{prefix}{apikeys.issue_link_token(victim, key='x', at=AT, ttl=timedelta(days=1))[0][4:]}",
        f"{prefix}{encoded}.{int(expires) + 3600}.{signature}",  # longer life, same signature
        token + "0",
        f"{prefix}{encoded}.{expires}",
    ]
    for bad in forged:
        r = _register(client, ingest, customer_id=victim, link_token=bad)
        assert r.status_code == 403, bad


def test_a_link_token_is_not_a_credential(api, victim):
    client, _, admin = api
    token = client.post(f"/v1/customers/{victim}/link-tokens", headers=admin).json()["link_token"]
    assert client.get("/v1/zones", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _register(client, {"X-API-Key": token}).status_code == 401


def test_an_admin_key_may_link_directly_and_link_tokens_need_admin(api, victim, engine):
    client, ingest, _ = api
    both = make_key_headers(engine, "admin", "ingest", name="back end")
    r = _register(client, both, customer_id=victim)
    assert r.status_code == 200 and r.json()["customer_id"] == victim
    assert client.post(f"/v1/customers/{victim}/link-tokens", headers=ingest).status_code == 403
    assert client.post("/v1/customers/nobody/link-tokens", headers=both).status_code == 404
