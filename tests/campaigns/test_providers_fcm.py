"""FCM provider: the real firebase-admin SDK against a loopback fake of the FCM HTTP v1 endpoint."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import firebase_admin
import pytest

from campaigns.providers.base import (
    TOKEN_UNREGISTERED,
    Channel,
    InvalidRecipient,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
)
from campaigns.providers.fcm import FcmProvider, collapse_id, send_budget_s, to_fcm_message
from geofence.service.settings import Settings
from tests.fakes.fcm_transport import (
    PROJECT,
    AnonymousCredential,
    FakeFcmServer,
    Reply,
    invalid_argument,
    not_found_without_error_code,
    point_app_at,
    quota_exceeded,
    sender_id_mismatch,
    unavailable,
    unregistered,
)

AT = datetime(2026, 3, 14, 11, 30, tzinfo=UTC)


def push(n: int = 1, *, to: str | None = None, expires_in: timedelta | None = timedelta(hours=2),
         **kw) -> OutboundMessage:
    fields = {
        "delivery_id": f"d{n}",
        "idempotency_key": f"campaign-7:customer-{n}:visit-3",
        "channel": Channel.PUSH,
        "to": to or f"token-{n}",
        "title": "Boulangerie Paul",
        "body": "-20% on croissants until noon",
        "data": {"campaign_id": "campaign-7", "zone_id": "z-42"},
        "expires_at": AT + expires_in if expires_in else None,
    }
    return OutboundMessage(**(fields | kw))


@pytest.fixture
def fcm():
    with FakeFcmServer() as server:
        yield server


@pytest.fixture
def provider(fcm):
    p = FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, clock=lambda: AT)
    point_app_at(p.app, fcm)
    yield p
    p.close()


def wire(message) -> dict:
    return json.loads(str(message))  # the SDK's own encoder: exactly what goes on the wire


# --- pure builder -------------------------------------------------------------------------------


def test_registration_token_goes_in_the_v1_token_field_without_a_warning():
    body = wire(to_fcm_message(push(), at=AT))  # filterwarnings=error: a DeprecationWarning would fail
    assert body["token"] == "token-1"
    assert "fid" not in body


def test_installation_id_goes_in_the_v1_fid_field():
    body = wire(to_fcm_message(push(to="fid-abc"), at=AT, target="fid"))
    assert body["fid"] == "fid-abc"
    assert "token" not in body


def test_collapse_keys_ttl_and_expiry_derive_from_the_delivery():
    msg = push(expires_in=timedelta(minutes=90, seconds=30.7))
    body = wire(to_fcm_message(msg, at=AT))
    key = collapse_id(msg.idempotency_key)
    assert len(key) == 32
    assert body["android"]["collapse_key"] == key
    assert body["android"]["notification"]["tag"] == key
    assert body["android"]["ttl"] == "5430s"
    assert body["apns"]["headers"]["apns-collapse-id"] == key
    assert body["apns"]["headers"]["apns-expiration"] == str(int((AT + timedelta(minutes=90, seconds=30.7))
                                                                 .timestamp()))
    assert body["notification"] == {"title": "Boulangerie Paul", "body": "-20% on croissants until noon"}


def test_same_idempotency_key_same_collapse_key_other_key_differs():
    assert collapse_id("a:b:c") == collapse_id("a:b:c") != collapse_id("a:b:d")


def test_data_values_are_strings_and_carry_the_delivery_id():
    msg = push(data={"discount": 20, "ok": True})  # type: ignore[dict-item]
    body = wire(to_fcm_message(msg, at=AT))
    assert body["data"] == {"discount": "20", "ok": "True", "delivery_id": "d1"}


def test_no_expiry_means_no_ttl_and_no_apns_expiration():
    body = wire(to_fcm_message(push(expires_in=None), at=AT))
    assert "ttl" not in body["android"]
    assert "apns-expiration" not in body["apns"]["headers"]


def test_expired_offer_is_not_built():
    with pytest.raises(PermanentError) as info:
        to_fcm_message(push(expires_in=timedelta(seconds=-5)), at=AT)
    assert info.value.code == "expired"


# --- the SDK against the loopback FCM --------------------------------------------------------------


def test_send_posts_the_v1_message_without_any_google_credential(provider, fcm):
    result = provider.send(push())
    assert result == SendResult(provider_message_id="projects/demo-test/messages/1", accepted_at=AT)
    (request,) = fcm.requests
    assert request.path == "/v1/projects/demo-test/messages:send"
    assert "Authorization" not in request.headers  # anonymous credential: no OAuth token fetched
    assert request.message["token"] == "token-1"
    assert request.message["apns"]["headers"]["apns-collapse-id"] == collapse_id(push().idempotency_key)
    assert request.message["android"]["ttl"] == "7200s"


def test_unregistered_token_is_an_invalid_recipient(provider, fcm):
    fcm.script("token-1", unregistered())
    with pytest.raises(InvalidRecipient) as info:
        provider.send(push())
    assert info.value.kind == TOKEN_UNREGISTERED
    assert info.value.code == "UNREGISTERED"


def test_a_404_without_unregistered_does_not_deactivate_the_token(provider, fcm):
    fcm.script("token-1", not_found_without_error_code())
    with pytest.raises(PermanentError) as info:
        provider.send(push())
    assert not isinstance(info.value, InvalidRecipient)
    assert info.value.code == "NOT_FOUND"


def test_quota_exceeded_is_retryable_and_sent_once_without_retry_after(provider, fcm):
    fcm.script("token-1", quota_exceeded())
    with pytest.raises(RetryableError) as info:
        provider.send(push())
    assert info.value.code == "QUOTA_EXCEEDED"
    assert info.value.retry_after_s is None
    assert len(fcm.requests) == 1  # urllib3 retries 429 only when Retry-After is present


def test_quota_exceeded_with_retry_after_is_handed_to_the_outbox_not_slept_out(provider, fcm):
    # The SDK's default policy slept out Retry-After four times in the sending thread (2 minutes for
    # 30 s, past the dispatcher's lease); the provider's reports it at once and the row is rescheduled.
    fcm.script("token-1", quota_exceeded("30"))
    with pytest.raises(RetryableError) as info:
        provider.send(push())
    assert info.value.retry_after_s == 30.0
    assert len(fcm.requests) == 1


def test_unavailable_is_retried_twice_by_the_sdk_then_retryable(provider, fcm):
    fcm.script("token-1", *[unavailable()] * 3)
    with pytest.raises(RetryableError) as info:
        provider.send(push())
    assert info.value.code == "UNAVAILABLE"
    assert len(fcm.requests) == 3
    assert provider.send(push()).provider_message_id  # the next send goes through: nothing left over


def test_a_503_retry_after_is_not_waited_for(provider, fcm):
    later = Reply(503, unavailable().body, {"Retry-After": "5"})
    fcm.script("token-1", later, later)
    started = time.monotonic()
    assert provider.send(push()).provider_message_id.startswith("projects/demo-test/messages/")
    assert time.monotonic() - started < 4.0  # the default policy would have slept 2 x 5 s
    assert len(fcm.requests) == 3


def test_a_silent_endpoint_costs_at_most_the_send_budget():
    with FakeFcmServer(delay_s=1.5) as silent:
        p = FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, timeout_s=0.2, clock=lambda: AT)
        point_app_at(p.app, silent)
        try:
            started = time.monotonic()
            with pytest.raises(RetryableError) as info:
                p.send(push())
            took = time.monotonic() - started
        finally:
            p.close()
    assert took < p.send_budget_s == send_budget_s(0.2)
    assert info.value.code == "UNAVAILABLE"  # the SDK reports a read timeout retried out as such
    assert silent.max_in_flight >= 2  # the read timeout was retried once, while the first still waited


def test_the_send_budget_counts_every_attempt_and_backoff():
    assert send_budget_s(5.0) == 3 * 2 * 5.0 + 1.0  # three attempts; 0 s then 1 s between them
    assert send_budget_s(5.0) < Settings().scheduler.lease_s


def test_one_503_is_absorbed_by_the_sdk_retry(provider, fcm):
    fcm.script("token-1", unavailable())
    assert provider.send(push()).provider_message_id.startswith("projects/demo-test/messages/")
    assert len(fcm.requests) == 2


@pytest.mark.parametrize(
    ("reply", "code"),
    [(sender_id_mismatch(), "SENDER_ID_MISMATCH"), (invalid_argument(), "INVALID_ARGUMENT")],
)
def test_permanent_errors_keep_the_token(provider, fcm, reply, code):
    fcm.script("token-1", reply)
    with pytest.raises(PermanentError) as info:
        provider.send(push())
    assert not isinstance(info.value, InvalidRecipient)
    assert info.value.code == code


def test_batch_maps_each_result_in_order(provider, fcm):
    fcm.script("token-2", unregistered())
    fcm.script("token-4", quota_exceeded())
    msgs = [push(n) for n in range(1, 6)] + [push(6, expires_in=timedelta(seconds=-1))]
    results = provider.send_batch(msgs)
    assert [type(r).__name__ for r in results] == [
        "SendResult", "InvalidRecipient", "SendResult", "RetryableError", "SendResult", "PermanentError",
    ]
    assert results[1].kind == TOKEN_UNREGISTERED
    assert {r.recipient for r in fcm.requests} == {f"token-{n}" for n in range(1, 6)}  # expired not sent


def test_bursts_are_chunked_so_send_each_never_opens_more_threads_than_the_batch_size(fcm):
    with FakeFcmServer(delay_s=0.05) as slow:
        p = FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, batch_size=10, clock=lambda: AT)
        point_app_at(p.app, slow)
        try:
            results = p.send_batch([push(n) for n in range(25)])
        finally:
            p.close()
    assert len(results) == 25
    assert all(isinstance(r, SendResult) for r in results)
    assert len(slow.requests) == 25
    assert 2 <= slow.max_in_flight <= 10


def test_batch_size_is_bounded_by_fcm():
    with pytest.raises(ValueError, match="between 1 and 500"):
        FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, batch_size=501, clock=lambda: AT)


def test_sdk_app_is_created_by_the_provider_and_deleted_on_close():
    p = FcmProvider(
        credential=AnonymousCredential(), project_id=PROJECT, app_name="geofence-test-app", clock=lambda: AT
    )
    assert firebase_admin.get_app("geofence-test-app") is p.app
    p.close()
    with pytest.raises(ValueError):
        firebase_admin.get_app("geofence-test-app")


def test_from_settings_requires_a_service_account_file():
    with pytest.raises(ValueError, match="CREDENTIALS_FILE"):
        FcmProvider.from_settings(Settings(channels=["fcm"]), clock=lambda: AT)


def test_from_settings_reads_project_and_target(fcm):
    settings = Settings(fcm={"project_id": "p-1", "target_field": "fid", "batch_size": 50})
    p = FcmProvider.from_settings(settings, credential=AnonymousCredential(), clock=lambda: AT)
    try:
        point_app_at(p.app, fcm, project="p-1")
        assert (p.target, p.batch_size) == ("fid", 50)
        p.send(push())
    finally:
        p.close()
    assert fcm.requests[0].path == "/v1/projects/p-1/messages:send"
    assert fcm.requests[0].message["fid"] == "token-1"


def test_from_settings_loads_the_service_account_file_without_any_network(tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "shop-prod", "private_key_id": "k1", "private_key": pem,
        "client_email": "fcm@shop-prod.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }))
    p = FcmProvider.from_settings(Settings(fcm={"credentials_file": str(path)}), clock=lambda: AT)
    try:
        assert p.app.project_id == "shop-prod"  # from the file; no token is fetched until a send
    finally:
        p.close()
