"""Twilio SMS provider: the real twilio SDK through Client(http_client=fake) with Twilio-shaped bodies."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from twilio.http.response import Response

from campaigns.providers.base import (
    NUMBER_INVALID,
    UNSUBSCRIBED,
    Channel,
    InvalidRecipient,
    OutboundMessage,
    OutcomeUnknown,
    PermanentError,
    RetryableError,
)
from campaigns.providers.errors import mask, scrub
from campaigns.providers.twilio_sms import TwilioSender, TwilioSmsProvider, to_twilio_params
from campaigns.providers.twilio_status import STATUS_CALLBACK_PATH, next_status
from geofence.service.settings import Settings
from tests.fakes.twilio_http import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    MESSAGING_SERVICE_SID,
    FakeTwilioHttpClient,
    error_json,
    invalid_number,
    rate_limited,
    server_error,
    unsubscribed,
)
from tests.fakes.twilio_server import FakeTwilioServer, point_provider_at

AT = datetime(2026, 3, 14, 11, 30, tzinfo=UTC)
CALLBACK = "https://geo.example.com" + STATUS_CALLBACK_PATH
TO = "+33612345678"


def sms(expires_in: timedelta | None = timedelta(hours=2), **kw) -> OutboundMessage:
    fields = {
        "delivery_id": "del-1",
        "idempotency_key": "c7:cust1:visit3",
        "channel": Channel.SMS,
        "to": TO,
        "body": "Boulangerie Paul: -20% STOP au 36123",
        "expires_at": AT + expires_in if expires_in else None,
    }
    return OutboundMessage(**(fields | kw))


@pytest.fixture
def fake():
    return FakeTwilioHttpClient()


def make_provider(fake, *, sender=None, validity=3600):
    return TwilioSmsProvider(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        sender=sender or TwilioSender(messaging_service_sid=MESSAGING_SERVICE_SID),
        status_callback_url=CALLBACK,
        validity_period_s=validity,
        http_client=fake,
        clock=lambda: AT,
    )


# --- pure -------------------------------------------------------------------------------------


def test_params_use_the_messaging_service_callback_and_validity():
    params = to_twilio_params(
        sms(), sender=TwilioSender(messaging_service_sid=MESSAGING_SERVICE_SID),
        status_callback_url=CALLBACK, configured_validity_s=3600, at=AT,
    )
    assert params == {
        "to": TO,
        "body": "Boulangerie Paul: -20% STOP au 36123",
        "validity_period": 3600,
        "messaging_service_sid": MESSAGING_SERVICE_SID,
        "status_callback": CALLBACK + "?delivery=del-1",
    }


def test_validity_never_outlives_the_offer():
    params = to_twilio_params(
        sms(expires_in=timedelta(minutes=20, seconds=0.9)), sender=TwilioSender(from_number="+15005550006"),
        status_callback_url=None, configured_validity_s=3600, at=AT,
    )
    assert params["validity_period"] == 1200
    assert params["from_"] == "+15005550006"
    assert "messaging_service_sid" not in params
    assert "status_callback" not in params


def test_validity_is_capped_at_twilio_maximum():
    params = to_twilio_params(
        sms(expires_in=None), sender=TwilioSender(from_number="36123"),
        status_callback_url=None, configured_validity_s=90000, at=AT,
    )
    assert params["validity_period"] == 36000


def test_expired_offer_is_not_sent():
    with pytest.raises(PermanentError) as info:
        to_twilio_params(sms(expires_in=timedelta(seconds=3)), sender=TwilioSender(from_number="36123"),
                         status_callback_url=None, configured_validity_s=3600, at=AT)
    assert info.value.code == "expired"


def test_a_sender_is_required():
    with pytest.raises(ValueError, match="messaging_service_sid or a from_number"):
        TwilioSender()


@pytest.mark.parametrize(
    ("current", "reported", "expected"),
    [
        ("sending", "queued", "queued"),
        ("sent", "queued", None),  # late "queued" after "sent": ignored
        ("queued", "sent", "sent"),
        ("sent", "delivered", "delivered"),
        ("delivered", "failed", None),  # never backwards from delivered
        ("delivered", "sent", None),
        ("delivered", "undelivered", None),
        ("sent", "undelivered", "undelivered"),
        ("undelivered", "delivered", "delivered"),
        ("failed", "undelivered", None),
        ("pending", "failed", "failed"),
        ("sent", "receiving", None),  # not an outbound status
        ("sent", "READ", "delivered"),
    ],
)
def test_callback_status_only_moves_forward(current, reported, expected):
    assert next_status(current, reported) == expected


# --- the SDK through the fake transport -------------------------------------------------------------


def test_send_posts_the_form_twilio_expects(fake):
    result = make_provider(fake).send(sms())
    (request,) = fake.requests
    assert request.method == "POST"
    assert request.uri == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    assert request.data["To"] == TO
    assert request.data["MessagingServiceSid"] == MESSAGING_SERVICE_SID
    assert "From" not in request.data
    assert int(request.data["ValidityPeriod"]) == 3600
    callback = urlsplit(request.data["StatusCallback"])
    assert callback.path == STATUS_CALLBACK_PATH
    assert parse_qs(callback.query) == {"delivery": ["del-1"]}
    assert result.provider_message_id == "SM" + f"{1:032x}"
    assert result.status == "queued"
    assert result.accepted_at == AT


def test_from_number_is_used_without_a_messaging_service(fake):
    make_provider(fake, sender=TwilioSender(from_number="36123")).send(sms(expires_in=timedelta(minutes=10)))
    assert fake.requests[0].data["From"] == "36123"
    assert int(fake.requests[0].data["ValidityPeriod"]) == 600


def test_21610_is_unsubscribed_for_that_sender_only(fake):
    fake.queue(unsubscribed())
    with pytest.raises(InvalidRecipient) as info:
        make_provider(fake).send(sms())
    assert info.value.kind == UNSUBSCRIBED
    assert info.value.code == "21610"
    assert info.value.sender == MESSAGING_SERVICE_SID


def test_21610_from_a_plain_number_names_that_number(fake):
    fake.queue(unsubscribed())
    with pytest.raises(InvalidRecipient) as info:
        make_provider(fake, sender=TwilioSender(from_number="36123")).send(sms())
    assert info.value.sender == "36123"


@pytest.mark.parametrize("code", [21211, 21614])
def test_invalid_numbers(fake, code):
    fake.queue(invalid_number(code))
    with pytest.raises(InvalidRecipient) as info:
        make_provider(fake).send(sms())
    assert info.value.kind == NUMBER_INVALID
    assert info.value.code == str(code)
    assert TO not in str(info.value)  # Twilio puts the number in its message: it is masked


@pytest.mark.parametrize("reply", [rate_limited(), server_error()])
def test_rate_limit_and_server_errors_are_retryable(fake, reply):
    fake.queue(reply)
    with pytest.raises(RetryableError):
        make_provider(fake).send(sms())


def test_other_4xx_is_permanent(fake):
    fake.queue(Response(400, json.dumps(error_json(400, 21608, "Unverified number"))))
    with pytest.raises(PermanentError) as info:
        make_provider(fake).send(sms())
    assert not isinstance(info.value, InvalidRecipient)
    assert info.value.code == "21608"


def test_non_json_5xx_is_retryable(fake):
    fake.queue(Response(502, "<html>Bad Gateway</html>"))
    with pytest.raises(RetryableError) as info:
        make_provider(fake).send(sms())
    assert info.value.code == "502"


def test_a_read_timeout_is_an_unknown_outcome_a_connect_timeout_is_retryable(fake):
    fake.queue(requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(OutcomeUnknown):  # Twilio may have created the message: never resend blindly
        make_provider(fake).send(sms())
    fake.queue(requests.exceptions.ConnectTimeout("connect timed out"))
    with pytest.raises(RetryableError) as info:
        make_provider(fake).send(sms())
    assert not isinstance(info.value, OutcomeUnknown)


def test_from_settings_builds_the_default_callback_url(fake):
    settings = Settings(
        public_base_url="https://geo.example.com/",
        twilio={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "36123",
                "validity_period_s": 900},
    )
    provider = TwilioSmsProvider.from_settings(settings, http_client=fake, clock=lambda: AT)
    provider.send(sms())
    assert fake.requests[0].data["StatusCallback"] == CALLBACK + "?delivery=del-1"
    assert int(fake.requests[0].data["ValidityPeriod"]) == 900


def test_from_settings_requires_credentials():
    with pytest.raises(ValueError, match="ACCOUNT_SID"):
        TwilioSmsProvider.from_settings(Settings(twilio={"from_number": "36123"}), clock=lambda: AT)


def test_masking_keeps_numbers_and_tokens_out_of_messages():
    assert mask("+33612345678") == "+33***78"
    assert "+33612345678" not in scrub("The 'To' number +33612345678 is not valid")
    assert "x" * 50 not in scrub("token " + "x" * 50)


def test_rfc9457_problem_bodies_are_mapped_too(fake):
    # Newer Twilio APIs answer with RFC 9457 problem details; the SDK raises TwilioServiceException.
    problem = {"type": "https://www.twilio.com/docs/errors/21610", "title": "Unsubscribed recipient",
               "status": 400, "code": 21610, "detail": "Attempt to send to unsubscribed recipient"}
    fake.queue(Response(400, json.dumps(problem)))
    with pytest.raises(InvalidRecipient) as info:
        make_provider(fake).send(sms())
    assert (info.value.kind, info.value.sender) == (UNSUBSCRIBED, MESSAGING_SERVICE_SID)


# --- the provider's own HTTP client, against a loopback Messages API ------------------------------


def loopback_provider(timeout_s: float = 10.0) -> TwilioSmsProvider:
    return TwilioSmsProvider(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, sender=TwilioSender(MESSAGING_SERVICE_SID),
        status_callback_url="https://example.test/v1/twilio/status", timeout_s=timeout_s, clock=lambda: AT,
    )


def test_the_default_http_client_sends_over_http_with_the_configured_timeout():
    provider = loopback_provider(timeout_s=3.0)
    assert provider.client.http_client.timeout == 3.0
    assert provider.send_budget_s == 6.0
    with FakeTwilioServer() as twilio:
        point_provider_at(provider, twilio)
        result = provider.send(sms())
    assert result.provider_message_id == "SM" + f"{1:032x}"
    assert twilio.forms[0]["To"] == TO
    assert twilio.forms[0]["MessagingServiceSid"] == MESSAGING_SERVICE_SID


def test_a_silent_twilio_costs_at_most_the_send_budget():
    provider = loopback_provider(timeout_s=0.2)
    with FakeTwilioServer(delay_s=1.5) as twilio:
        point_provider_at(provider, twilio)
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown):
            provider.send(sms())
        took = time.monotonic() - started
    assert took < provider.send_budget_s
    assert twilio.arrived == 1  # no retry in the SDK: the outbox retries


def test_from_settings_passes_the_timeout():
    settings = Settings(twilio={"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": "36123",
                                "timeout_s": 4.0})
    provider = TwilioSmsProvider.from_settings(settings, clock=lambda: AT)
    assert provider.client.http_client.timeout == 4.0
    assert provider.send_budget_s == 8.0
