"""Structured logs: JSON lines, with phone numbers, push tokens and our credentials masked."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geofence.service.logging import configure_logging, mask

FCM_TOKEN = "fPcJk3eQTf2cL9mXyZAbCd:APA91bH" + "x7Kq-_Zr4" * 15


@pytest.fixture
def log_lines(settings):
    buf = io.StringIO()
    handler = configure_logging(settings, buf)
    yield lambda: [json.loads(line) for line in buf.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize(
    ("text", "leaked"),
    [
        ("sms to +33612345678 failed", "612345678"),
        ('"GET /v1/customers?phone=%2B33612345678 HTTP/1.1" 200', "612345678"),
        ("sms to +33 6 12 34 56 78 failed", "6 12 34 56"),
        ("twilio: 'To' +1-415-555-0123 is not a mobile number", "415-555-01"),
        (f"fcm unregistered token {FCM_TOKEN}", FCM_TOKEN[10:60]),
        ("bare APA91bHx7Kq-_Zr4x7Kq-_Zr4x7Kq-_Zr4 token", "x7Kq-_Zr4x7Kq"),
        ("key gfk_0123456789abcdef_0f0f0f0f0f0f used", "0f0f0f0f0f0f"),
        ("device gfd_cGhvbmUtMQ.aabbccddeeff", "aabbccddeeff"),
    ],
)
def test_mask_hides_phone_numbers_tokens_and_credentials(text, leaked):
    assert leaked not in mask(text)


def test_mask_keeps_a_short_tail_and_leaves_ordinary_numbers_alone():
    assert mask("+33612345678") == "+33*******78"
    plain = "order 123456789 at 12:00, 2026-03-01, zone +5 m"
    assert mask(plain) == plain


@given(digits=st.text(alphabet="0123456789", min_size=6, max_size=14), lead=st.sampled_from("123456789"))
def test_any_e164_number_is_masked_wherever_it_appears(digits, lead):
    number = f"+{lead}{digits}"
    assert number not in mask(f"x {number} y") and number not in mask(f"to={number}")


def test_json_lines_mask_args_extra_fields_and_exceptions(log_lines):
    log = logging.getLogger("geofence.test")
    log.warning("sending to %s with %s", "+447911123456", FCM_TOKEN, extra={"to": "+447911123456"})
    try:
        raise ValueError("bad number +14155550123")
    except ValueError:
        log.exception("send failed for %s", "+14155550123")
    first, second = log_lines()
    assert first["level"] == "warning" and first["logger"] == "geofence.test"
    assert "7911123456" not in json.dumps(first) and FCM_TOKEN[30:] not in json.dumps(first)
    assert first["to"] == "+44********56"
    assert "4155550123" not in json.dumps(second) and "ValueError" in second["exc"]


def test_configure_is_idempotent_and_routes_uvicorn_through_the_masking_handler(settings, log_lines):
    configure_logging(settings, io.StringIO())  # replaces, never stacks, our handler
    ours = [h for h in logging.getLogger().handlers if h.get_name() == "geofence"]
    assert len(ours) == 1
    assert logging.getLogger("uvicorn.access").handlers == []
    assert logging.getLogger("uvicorn.access").propagate


def test_the_configured_level_holds_for_uvicorns_access_log(settings):
    """uvicorn sets its loggers to INFO; under level WARNING a request must not write a line."""
    logging.getLogger("uvicorn.access").setLevel(logging.INFO)  # as ``uvicorn.run(log_level="info")`` does
    buf, root_level = io.StringIO(), logging.getLogger().level
    quiet = settings.model_copy(update={"log": settings.log.model_copy(update={"level": "WARNING"})})
    handler = configure_logging(quiet, buf)
    try:
        logging.getLogger("uvicorn.access").info('127.0.0.1:1 - "GET /v1/zones HTTP/1.1" 200')
        logging.getLogger("uvicorn.error").warning("still shown")
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(root_level)
    assert [json.loads(line)["msg"] for line in buf.getvalue().splitlines()] == ["still shown"]
