"""API keys and device credentials: hashed storage, scopes, revocation and the device binding."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient
from sqlmodel import select

from geofence.service import apikeys
from geofence.service.app import create_app
from geofence.service.db import session_scope
from geofence.service.security import Principal, require_scope
from geofence.service.tables.customers import Device
from geofence.service.tables.keys import ApiKey

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_key_is_stored_hashed_and_verifies_only_with_its_secret(session):
    info, token = apikeys.create_api_key(session, name="mobile app", scopes={"ingest"}, at=AT)
    session.commit()
    row = session.exec(select(ApiKey)).one()
    assert token not in row.secret_hash and token.split("_")[-1] not in row.model_dump_json()
    assert row.secret_hash == hashlib.sha256(token.encode()).hexdigest()
    expected = apikeys.VerifiedKey(info.id, frozenset({"ingest"}))
    assert apikeys.verify_api_key(session, token, at=AT) == expected
    tampered = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert apikeys.verify_api_key(session, tampered, at=AT) is None
    assert apikeys.verify_api_key(session, "gfk_" + info.id, at=AT) is None
    assert apikeys.verify_api_key(session, "gfk_nosuchkey_00", at=AT) is None
    assert apikeys.verify_api_key(session, "x" * 10_000, at=AT) is None
    assert apikeys.verify_api_key(session, "gfk_\x00_00", at=AT) is None


def test_revoked_key_no_longer_verifies_and_list_never_shows_secrets(session):
    info, token = apikeys.create_api_key(session, name="crm", scopes={"admin"}, at=AT)
    revoked = apikeys.revoke_api_key(session, info.id, at=AT + timedelta(hours=1))
    session.commit()
    assert revoked is not None and revoked.revoked_at == AT + timedelta(hours=1)
    again = apikeys.revoke_api_key(session, info.id, at=AT + timedelta(hours=2))
    assert again is not None and again.revoked_at == AT + timedelta(hours=1)
    assert apikeys.verify_api_key(session, token, at=AT + timedelta(hours=3)) is None
    assert apikeys.revoke_api_key(session, "unknown", at=AT) is None
    listed = apikeys.list_api_keys(session)
    assert [k.id for k in listed] == [info.id]
    assert "secret" not in repr(listed) and token not in repr(listed)
    assert apikeys.list_api_keys(session, include_revoked=False) == []


def test_last_used_is_recorded_at_most_once_a_minute(session):
    info, token = apikeys.create_api_key(session, name="app", scopes={"ingest"}, at=AT)
    apikeys.verify_api_key(session, token, at=AT + timedelta(seconds=5))
    session.commit()
    apikeys.verify_api_key(session, token, at=AT + timedelta(seconds=30))
    session.commit()
    session.expire_all()
    assert apikeys.list_api_keys(session)[0].last_used_at == AT + timedelta(seconds=5)
    apikeys.verify_api_key(session, token, at=AT + timedelta(seconds=70))
    session.commit()
    session.expire_all()
    assert apikeys.list_api_keys(session)[0].last_used_at == AT + timedelta(seconds=70)


@pytest.mark.parametrize("scopes", [set(), {"root"}, {"ingest", "superuser"}])
def test_unknown_or_empty_scopes_are_refused(session, scopes):
    with pytest.raises(ValueError, match="scopes"):
        apikeys.create_api_key(session, name="x", scopes=scopes, at=AT)


def test_device_credential_proves_its_device_and_rotation_invalidates_the_old_one(session):
    session.add(Device(id="dev.1/ü", platform="ios"))
    session.commit()
    first = apikeys.issue_device_credential(session, "dev.1/ü")
    session.commit()
    assert apikeys.verify_device_credential(session, first) == "dev.1/ü"
    second = apikeys.issue_device_credential(session, "dev.1/ü")
    session.commit()
    assert apikeys.verify_device_credential(session, first) is None
    assert apikeys.verify_device_credential(session, second) == "dev.1/ü"
    assert session.get(Device, "dev.1/ü").credential_hash == hashlib.sha256(second.encode()).hexdigest()
    nul = "gfd_" + base64.urlsafe_b64encode(b"dev\x00").decode() + ".00"  # PostgreSQL refuses NUL
    junks = ["", "gfd_", "gfd_!!!.00", "gfd_" + "A" * 600, second.replace("gfd_", "gfk_"), "gfd_ZGV2.00", nul]
    for junk in junks:
        assert apikeys.verify_device_credential(session, junk) is None
    with pytest.raises(LookupError):
        apikeys.issue_device_credential(session, "never-registered")


# --- over HTTP ---------------------------------------------------------------------------------------

probe = APIRouter()


@probe.get("/probe/ingest")
def _probe_ingest(principal: Principal = Depends(require_scope("ingest"))) -> dict[str, object]:
    return {"key_id": principal.key_id, "device_id": principal.device_id}


@probe.get("/probe/admin")
def _probe_admin(principal: Principal = Depends(require_scope("admin"))) -> dict[str, object]:
    return {"key_id": principal.key_id}


@pytest.fixture
def client(secure_settings, engine):
    app = create_app(secure_settings, engine=engine)
    app.include_router(probe)
    with TestClient(app) as c:
        yield c


def _key(engine, *scopes):
    with session_scope(engine) as s:
        info, token = apikeys.create_api_key(s, name="t", scopes=set(scopes), at=AT)
    return info, token


def test_bearer_and_x_api_key_headers_both_authenticate(client, engine):
    info, token = _key(engine, "ingest")
    for headers in ({"Authorization": f"Bearer {token}"}, {"X-API-Key": token}):
        r = client.get("/probe/ingest", headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == {"key_id": info.id, "device_id": None}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}, {"X-API-Key": "gfk_x_y"}],
)
def test_missing_or_invalid_credentials_get_401(client, headers):
    r = client.get("/probe/ingest", headers=headers)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["detail"]


def test_key_without_the_scope_gets_403_and_admin_does_not_imply_ingest(client, engine):
    _, ingest = _key(engine, "ingest")
    _, admin = _key(engine, "admin")
    _, both = _key(engine, "admin", "ingest")
    assert client.get("/probe/admin", headers={"X-API-Key": ingest}).status_code == 403
    assert client.get("/probe/ingest", headers={"X-API-Key": admin}).status_code == 403
    assert client.get("/probe/admin", headers={"X-API-Key": both}).status_code == 200
    assert "admin" in client.get("/probe/admin", headers={"X-API-Key": ingest}).json()["detail"]


def test_revoked_key_is_refused_at_once(client, engine):
    info, token = _key(engine, "ingest")
    assert client.get("/probe/ingest", headers={"X-API-Key": token}).status_code == 200
    with session_scope(engine) as s:
        apikeys.revoke_api_key(s, info.id, at=AT)
    assert client.get("/probe/ingest", headers={"X-API-Key": token}).status_code == 401


def test_device_token_binds_the_principal_to_its_device(client, engine):
    _, token = _key(engine, "ingest")
    with session_scope(engine) as s:
        s.add(Device(id="phone-1"))
        s.flush()
        device_token = apikeys.issue_device_credential(s, "phone-1")
    r = client.get("/probe/ingest", headers={"X-API-Key": token, "X-Device-Token": device_token})
    assert r.status_code == 200
    assert r.json()["device_id"] == "phone-1"
    bound = Principal(key_id="k", scopes=frozenset({"ingest"}), device_id="phone-1")
    assert bound.may_act_for_device("phone-1") and not bound.may_act_for_device("phone-2")
    forged = device_token[:-1] + ("0" if device_token[-1] != "0" else "1")
    r = client.get("/probe/ingest", headers={"X-API-Key": token, "X-Device-Token": forged})
    assert r.status_code == 401
    # a device token alone is not enough: the app's ingest key is required too
    assert client.get("/probe/ingest", headers={"X-Device-Token": device_token}).status_code == 401


def test_auth_off_lets_requests_through_as_the_open_principal(settings, engine):
    app = create_app(settings, engine=engine)
    app.include_router(probe)
    with TestClient(app) as c:
        assert c.get("/probe/admin").status_code == 200
