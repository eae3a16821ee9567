"""POST /v1/locations at the HTTP edge: credentials, rate limits and body limits, answered the same by the
lean handler (``routes.locations.serve_locations``) and by the decorated FastAPI route behind it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time

from geofence.service import apikeys
from geofence.service.app import GeofenceApp, create_app
from geofence.service.db import session_scope
from geofence.service.tables.customers import Device

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def fix(device_id: str) -> dict[str, object]:
    at = NOW.isoformat()
    return {"device_id": device_id, "lat": 48.85, "lng": 2.35, "accuracy_m": 10, "recorded_at": at}


@pytest.fixture(params=["lean", "routed"])
def make_client(request, secure_settings, engine):
    clients: list[TestClient] = []

    def make(**limits: object) -> tuple[TestClient, GeofenceApp]:
        settings = secure_settings.model_copy(
            update={
                "ingest": secure_settings.ingest.model_copy(update={"max_body_bytes": 2000}),
                "limits": secure_settings.limits.model_copy(update=limits),
            }
        )
        app = create_app(settings, engine=engine)
        assert isinstance(app, GeofenceApp)
        app.lean_feed = request.param == "lean"
        app.state.runtime.geofence.location_consent = None
        client = TestClient(app)
        clients.append(client.__enter__())
        return client, app

    yield make
    for c in clients:
        c.__exit__(None, None, None)


def _key(engine, *scopes: str) -> str:
    with session_scope(engine) as s:
        return apikeys.create_api_key(s, name="t", scopes=set(scopes), at=NOW)[1]


def test_credentials_are_checked_with_the_ingest_scope(make_client, engine):
    client, _ = make_client()
    ingest, admin = _key(engine, "ingest"), _key(engine, "admin")
    with freeze_time(NOW):
        missing = client.post("/v1/locations", json=fix("a"))
        wrong_scope = client.post("/v1/locations", json=fix("a"), headers={"X-API-Key": admin})
        ok = client.post("/v1/locations", json=fix("a"), headers={"Authorization": f"Bearer {ingest}"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in missing.json()["detail"]
    assert wrong_scope.status_code == 403 and "ingest" in wrong_scope.json()["detail"]
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_a_device_credential_may_post_only_for_its_own_device(make_client, engine):
    client, _ = make_client()
    token = _key(engine, "ingest")
    with session_scope(engine) as s:
        s.add(Device(id="phone-1"))
        s.flush()
        device_token = apikeys.issue_device_credential(s, "phone-1")
    headers = {"X-API-Key": token, "X-Device-Token": device_token}
    with freeze_time(NOW):
        r = client.post("/v1/locations", json={"fixes": [fix("phone-1"), fix("phone-2")]}, headers=headers)
        forged_headers = {**headers, "X-Device-Token": "gfd_x.0"}
        forged = client.post("/v1/locations", json=fix("phone-1"), headers=forged_headers)
    assert [x["reason"] for x in r.json()["results"]] == [None, "device_not_allowed"]
    assert forged.status_code == 401


def test_the_key_rate_limit_answers_429_with_retry_after(make_client, engine):
    client, _ = make_client(key_rate_per_s=0.01, key_burst=1)
    headers = {"X-API-Key": _key(engine, "ingest")}
    with freeze_time(NOW):
        first = client.post("/v1/locations", json=fix("a"), headers=headers)
        limited = client.post("/v1/locations", json=fix("b"), headers=headers)
    assert first.status_code == 200
    assert limited.status_code == 429 and 90 <= int(limited.headers["retry-after"]) <= 100


def test_body_limits_answer_413_and_400_and_a_body_within_them_is_ingested(make_client, engine):
    client, _ = make_client()
    headers = {"X-API-Key": _key(engine, "ingest"), "content-type": "application/json"}
    streamed = client.post("/v1/locations", content=iter([b'{"fixes": [' + b" " * 1500, b" " * 1500 + b"]}"]),
                           headers=headers)
    declared = client.post("/v1/locations", content=b" " * 2001, headers=headers)
    bad_length = client.post("/v1/locations", content=b"{}", headers={**headers, "content-length": "nope"})
    with freeze_time(NOW):
        small = client.post("/v1/locations", content=iter([b'{"fixes": [', b"]}"]), headers=headers)
    assert streamed.status_code == 413 and "2000 bytes" in streamed.json()["detail"]
    assert declared.status_code == 413
    assert bad_length.status_code == 400
    assert small.status_code == 200 and small.json()["results"] == []
