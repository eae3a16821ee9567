"""Twilio status callbacks (signed with the SDK's RequestValidator) and the admin delivery list.

Runs on SQLite and PostgreSQL (``engine`` / ``session`` fixtures). The app is the deliveries router on
a bare runtime, so these tests depend on nothing but this domain.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session
from twilio.request_validator import RequestValidator

from campaigns.providers.twilio_status import STATUS_CALLBACK_PATH
from geofence.service.routes import deliveries
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import Delivery

TOKEN = "twilio-test-auth-token"
BASE = "https://geo.example.com"
AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def app_settings(tmp_path) -> Settings:
    return Settings(
        env="test", hash_key="test-hash-key-not-secret", public_base_url=BASE, auth_required=False,
        outbox_dir=tmp_path,
        scheduler={"enabled": False}, twilio={"auth_token": TOKEN},
    )


def _client(engine, app_settings):
    app = FastAPI()
    app.state.runtime = bootstrap(app_settings, engine)
    app.include_router(deliveries.router)
    return TestClient(app)


@pytest.fixture
def client(engine, app_settings):
    """On SQLite and PostgreSQL: for what the database decides."""
    with _client(engine, app_settings) as c:
        yield c


@pytest.fixture
def http_client(sqlite_engine, app_settings):
    """SQLite only: for request validation that never reaches a database difference."""
    with _client(sqlite_engine, app_settings) as c:
        yield c


@pytest.fixture
def sqlite_session(sqlite_engine):
    with Session(sqlite_engine, expire_on_commit=False) as s:
        yield s


def add(session: Session, n: int, **kw) -> Delivery:
    fields = {
        "id": f"del-{n}", "idempotency_key": f"key-{n}", "channel": "sms", "status": "queued",
        "provider": "twilio", "provider_message_id": f"SM{n:032d}", "campaign_id": "camp-1",
        "customer_id": f"cust-{n}", "due_at": AT, "created_at": AT + timedelta(seconds=n),
    }
    row = Delivery(**(fields | kw))
    session.add(row)
    session.commit()
    return row


def post_status(client, params: dict[str, str], *, query: str = "", token: str = TOKEN, tamper=None):
    path = STATUS_CALLBACK_PATH + (f"?{query}" if query else "")
    signature = RequestValidator(token).compute_signature(BASE + path, params)
    body = dict(params) | (tamper or {})
    return client.post(path, data=body, headers={"X-Twilio-Signature": signature})


def reload(session: Session, delivery_id: str) -> Delivery:
    session.expire_all()
    row = session.get(Delivery, delivery_id)
    assert row is not None
    return row


def callback(n: int, status: str, **extra: str) -> dict[str, str]:
    return {"MessageSid": f"SM{n:032d}", "MessageStatus": status, "AccountSid": "AC" + "0" * 32,
            "From": "36123", "To": "+33612345678"} | extra


def test_sent_then_delivered(client, session):
    add(session, 1)
    assert post_status(client, callback(1, "sent")).json() == {"result": "sent"}
    assert reload(session, "del-1").status == "sent"
    assert post_status(client, callback(1, "delivered")).json() == {"result": "delivered"}
    row = reload(session, "del-1")
    assert row.status == "delivered"
    assert row.delivered_at is not None


def test_delivered_is_never_moved_backwards(client, session):
    add(session, 1, status="delivered")
    for late in ("sent", "queued", "failed", "undelivered"):
        response = post_status(client, callback(1, late, ErrorCode="30003"))
        assert response.status_code == 200
        assert response.json()["result"].startswith("ignored")
    row = reload(session, "del-1")
    assert row.status == "delivered"
    assert row.error_code is None


@pytest.mark.parametrize(("status", "code"), [("undelivered", "30003"), ("failed", "30007")])
def test_failures_record_the_error_code(client, session, status, code):
    add(session, 1, status="sent")
    post_status(client, callback(1, status, ErrorCode=code, ErrorMessage="Unreachable +33612345678"))
    row = reload(session, "del-1")
    assert (row.status, row.error_code) == (status, code)
    assert "+33612345678" not in (row.last_error or "")


def test_unknown_message_is_acknowledged_and_ignored(client, session):
    add(session, 1)
    response = post_status(client, callback(999, "delivered"))
    assert response.status_code == 200
    assert response.json() == {"result": "ignored: unknown message"}
    assert reload(session, "del-1").status == "queued"


def test_callback_before_the_dispatcher_recorded_the_sid_finds_the_row_by_its_url(client, session):
    add(session, 2, status="sending", provider=None, provider_message_id=None)
    response = post_status(client, callback(2, "sent"), query="delivery=del-2")
    assert response.json() == {"result": "sent"}
    row = reload(session, "del-2")
    assert (row.status, row.provider_message_id, row.provider) == ("sent", f"SM{2:032d}", "twilio")


def test_a_hint_naming_another_message_is_not_trusted(client, session):
    add(session, 3, provider_message_id="SM-other")
    response = post_status(client, callback(3, "delivered"), query="delivery=del-3")
    assert response.json() == {"result": "ignored: unknown message"}
    assert reload(session, "del-3").status == "queued"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token": "not-the-token"},  # forged
        {"tamper": {"MessageStatus": "delivered"}},  # one parameter changed after signing
    ],
)
def test_forged_or_tampered_callbacks_are_refused(http_client, sqlite_session, kwargs):
    client, session = http_client, sqlite_session
    add(session, 1)
    response = post_status(client, callback(1, "failed"), **kwargs)
    assert response.status_code == 403
    assert reload(session, "del-1").status == "queued"


def test_a_signature_for_another_url_is_refused(http_client, sqlite_session):
    client, session = http_client, sqlite_session
    add(session, 1)
    signature = RequestValidator(TOKEN).compute_signature(BASE + STATUS_CALLBACK_PATH, callback(1, "failed"))
    response = client.post(STATUS_CALLBACK_PATH + "?delivery=del-1", data=callback(1, "failed"),
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    assert reload(session, "del-1").status == "queued"


def test_missing_signature_is_refused(http_client):
    assert http_client.post(STATUS_CALLBACK_PATH, data=callback(1, "sent")).status_code == 403


def test_signed_callback_without_status_is_a_400(http_client):
    response = post_status(http_client, {"MessageSid": "SM1"})
    assert response.status_code == 400
    assert "MessageStatus" in response.json()["detail"]


def test_racing_callbacks_end_on_the_furthest_status(engine, session):
    """``sent`` and ``delivered`` arriving together: the compare-and-set keeps ``delivered``."""
    for n in range(10):
        add(session, 100 + n)
    barrier = threading.Barrier(2)

    def apply(n: int, status: str) -> None:
        barrier.wait()
        deliveries.apply_twilio_status(engine, callback(n, status), delivery_hint=None, at=AT)

    for n in range(100, 110):
        threads = [threading.Thread(target=apply, args=(n, s)) for s in ("delivered", "sent")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert reload(session, f"del-{n}").status == "delivered"


# --- admin list ---------------------------------------------------------------------------------


def test_admin_list_filters_and_pages(client, session):
    for n in range(1, 6):
        add(session, n, status="delivered" if n % 2 else "failed", channel="sms" if n < 5 else "push")
    first = client.get("/v1/deliveries", params={"limit": 2}).json()
    assert [d["id"] for d in first["items"]] == ["del-5", "del-4"]  # newest first
    second = client.get("/v1/deliveries", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in second["items"]] == ["del-3", "del-2"]
    third = client.get("/v1/deliveries", params={"limit": 2, "cursor": second["next_cursor"]}).json()
    assert [d["id"] for d in third["items"]] == ["del-1"]
    assert third["next_cursor"] is None

    delivered_sms = client.get("/v1/deliveries", params={"status": "delivered", "channel": "sms"}).json()
    assert [d["id"] for d in delivered_sms["items"]] == ["del-3", "del-1"]
    window = client.get("/v1/deliveries", params={
        "created_from": (AT + timedelta(seconds=2)).isoformat(),
        "created_to": (AT + timedelta(seconds=4)).isoformat(),
    }).json()
    assert [d["id"] for d in window["items"]] == ["del-3", "del-2"]
    one = client.get("/v1/deliveries", params={"provider_message_id": f"SM{4:032d}"}).json()
    assert [d["id"] for d in one["items"]] == ["del-4"]
    assert one["items"][0]["created_at"] in ("2026-11-23T10:00:04Z", "2026-11-23T10:00:04+00:00")


def test_admin_list_shows_which_dispatcher_holds_a_row_until_when_and_ambiguous_sends(client, session):
    from geofence.service import clock

    now = clock.now()
    until = now + timedelta(seconds=50)
    add(session, 1, status="sending", leased_by="host-a:4242:140:abc123", lease_until=until,
        send_started_at=now)
    add(session, 2, status="failed", reason="ambiguous_send", leased_by="host-b:7:1:def",
        lease_until=None, send_started_at=now - timedelta(minutes=3))
    add(session, 3, status="sending", leased_by="host-c:9:1:old", lease_until=now - timedelta(seconds=5))
    rows = {d["id"]: d for d in client.get("/v1/deliveries").json()["items"]}
    assert rows["del-1"]["lease_holder"] == "host-a:4242:140"
    assert rows["del-1"]["lease_until"].startswith(until.strftime("%Y-%m-%dT%H:%M:%S"))
    assert rows["del-1"]["send_started_at"] is not None
    assert (rows["del-2"]["lease_holder"], rows["del-2"]["lease_until"]) == (None, None)  # finished
    held = client.get("/v1/deliveries", params={"leased": "true"}).json()["items"]
    assert [d["id"] for d in held] == ["del-1"]  # del-3's lease lapsed: any dispatcher may claim it
    ambiguous = client.get("/v1/deliveries", params={"reason": "ambiguous_send"}).json()["items"]
    assert [(d["id"], d["status"]) for d in ambiguous] == [("del-2", "failed")]


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"channel": "fax"}, 422),
        ({"limit": 0}, 422),
        ({"cursor": "not-a-cursor"}, 400),
        ({"created_from": "2026-11-23T10:00:00"}, 400),  # naive datetime: which zone?
        ({"created_from": "yesterday"}, 422),
    ],
)
def test_admin_list_rejects_bad_input_with_4xx(http_client, params, status):
    response = http_client.get("/v1/deliveries", params=params)
    assert response.status_code == status


def test_admin_list_requires_the_admin_scope():
    route = next(r for r in deliveries.router.routes if getattr(r, "path", "") == "/v1/deliveries")
    scopes = {getattr(d.call, "required_scope", None) for d in route.dependant.dependencies}
    assert "admin" in scopes


def test_the_real_app_serves_the_callback_without_an_api_key_and_the_list_with_one(
    secure_settings, sqlite_engine
):
    """Through ``create_app`` (every domain wired, auth on): Twilio's signature is the credential."""
    from geofence.service.app import create_app
    from tests.conftest import make_key_headers

    app_settings = secure_settings.model_copy(
        update={"public_base_url": BASE, "twilio": secure_settings.twilio.model_copy(
            update={"auth_token": SecretStr(TOKEN)})}
    )
    with Session(sqlite_engine, expire_on_commit=False) as s:
        add(s, 7)
    with TestClient(create_app(app_settings, engine=sqlite_engine)) as real:
        assert post_status(real, callback(7, "delivered")).json() == {"result": "delivered"}
        assert real.get("/v1/deliveries").status_code == 401
        listed = real.get("/v1/deliveries", headers=make_key_headers(sqlite_engine, "admin")).json()
    assert [(d["id"], d["status"]) for d in listed["items"]] == [("del-7", "delivered")]
