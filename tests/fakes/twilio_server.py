"""A loopback fake of Twilio's Messages API, for the provider's own ``TwilioHttpClient`` (timeouts, the
real HTTP stack): ``FakeTwilioServer`` answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` with a
Message resource (201), or holds its reply ``delay_s`` first.

``GET .../Messages.json`` lists the accepted messages filtered by ``To``, ``From`` and ``DateSent>`` (the
provider's ``lookup``); ``accepted`` counts accepted messages per recipient, answered or not.

``point_provider_at`` mounts, on the provider's own ``requests`` session (public attributes
``Client.http_client`` and ``TwilioHttpClient.session``), an adapter that sends what was meant for
``https://api.twilio.com`` to the fake instead; the timeout the provider set reaches the adapter as is.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests.adapters

from tests.fakes.loopback import Chaos, LoopbackServer
from tests.fakes.twilio_http import error_json, message_json

TWILIO_API = "https://api.twilio.com"


class FakeTwilioServer(LoopbackServer):
    name = "fake-twilio"

    def __init__(self, *, delay_s: float = 0.0, chaos: Chaos | None = None) -> None:
        self.forms: list[dict[str, str]] = []
        self.messages: list[dict[str, Any]] = []
        self.accepted: Counter[str] = Counter()
        self._sids = (f"SM{n:032x}" for n in itertools.count(1))
        super().__init__(delay_s=delay_s, chaos=chaos)

    def _unavailable(self) -> Any:
        return error_json(503, 20503, "Service Unavailable")

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self._lock:
            self.forms.append(form)
            sid = next(self._sids)
        if not path.endswith("/Messages.json"):
            return 404, {"code": 20404, "message": "not found", "status": 404}, {}
        now = format_datetime(datetime.now(UTC), usegmt=True)
        message = message_json(sid, form) | {"date_created": now, "date_updated": now, "date_sent": now}
        with self._lock:
            self.messages.append(message)
            self.accepted[form.get("To", "")] += 1
        return 201, message, {}

    def _get(self, path: str) -> tuple[int, Any]:
        url = urlsplit(path)
        if not url.path.endswith("/Messages.json"):
            return 404, error_json(404, 20404, "not found")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        after = query.get("DateSent>")
        since = datetime.fromisoformat(after.replace("Z", "+00:00")).date() if after else None
        with self._lock:
            found = [
                m for m in reversed(self.messages)
                if m["to"] == query.get("To", m["to"]) and m["from"] == query.get("From", m["from"])
                and (since is None or datetime.now(UTC).date() >= since)
            ]
        return 200, {"messages": found, "next_page_uri": None, "page": 0, "page_size": 50,
                     "first_page_uri": url.path, "previous_page_uri": None, "uri": path}


class _Loopback(requests.adapters.HTTPAdapter):
    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        request.url = self.base_url + request.url[len(TWILIO_API):]
        return super().send(request, **kwargs)


def point_provider_at(provider: Any, server: FakeTwilioServer) -> None:
    """Send the provider's Twilio traffic to the loopback fake, through its own HTTP client."""
    provider.client.http_client.session.mount(TWILIO_API, _Loopback(server.base_url))
