"""A fake Twilio transport: a real ``twilio.http.HttpClient`` subclass that records requests and replies
with scripted, Twilio-shaped ``twilio.http.response.Response`` objects.

Injected through the public ``Client(sid, token, http_client=fake)``: the real SDK builds the form
body and parses the reply into a ``MessageInstance`` or a ``TwilioRestException``.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from twilio.http import HttpClient
from twilio.http.response import Response

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
MESSAGING_SERVICE_SID = "MG" + "1" * 32


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    uri: str
    data: dict[str, Any]
    params: dict[str, Any]
    headers: dict[str, str]
    auth: tuple[str, str] | None


def message_json(sid: str, data: dict[str, Any], status: str = "queued") -> dict[str, Any]:
    """A Message resource as Twilio returns it on 201 Created (fields the SDK reads)."""
    return {
        "account_sid": ACCOUNT_SID,
        "api_version": "2010-04-01",
        "body": data.get("Body"),
        "date_created": "Mon, 23 Nov 2026 10:00:00 +0000",
        "date_sent": None,
        "date_updated": "Mon, 23 Nov 2026 10:00:00 +0000",
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": data.get("From"),
        "messaging_service_sid": data.get("MessagingServiceSid"),
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"},
        "to": data.get("To"),
        "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
    }


def error_json(status: int, code: int, message: str) -> dict[str, Any]:
    """Twilio's legacy error body (what the Messages API returns)."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def unsubscribed() -> Response:
    return Response(400, json.dumps(error_json(400, 21610, "Attempt to send to unsubscribed recipient")))


def invalid_number(code: int = 21211, to: str = "+33612345678") -> Response:
    text = f"The 'To' number {to} is not a valid phone number."
    return Response(400, json.dumps(error_json(400, code, text)))


def rate_limited() -> Response:
    return Response(429, json.dumps(error_json(429, 20429, "Too Many Requests")))


def server_error() -> Response:
    return Response(500, json.dumps(error_json(500, 20500, "Internal Server Error")))


class FakeTwilioHttpClient(HttpClient):
    """Replies from ``queue(...)`` first (a Response, or an exception to raise), then 201 Created."""

    def __init__(self) -> None:
        super().__init__(logger=logging.getLogger("tests.fake_twilio"), is_async=False)
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Response | Exception] = deque()
        self._sids = (f"SM{n:032x}" for n in itertools.count(1))

    def queue(self, *replies: Response | Exception) -> None:
        self._replies.extend(replies)

    def request(
        self,
        method: str,
        uri: str,
        params: dict[str, object] | None = None,
        data: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float | None = None,
        allow_redirects: bool = False,
    ) -> Response:
        recorded = RecordedRequest(
            method, uri, dict(data or {}), dict(params or {}), dict(headers or {}), auth
        )
        self.requests.append(recorded)
        if self._replies:
            reply = self._replies.popleft()
            if isinstance(reply, Exception):
                raise reply
            return reply
        return Response(201, json.dumps(message_json(next(self._sids), recorded.data)))
