"""A loopback fake of Twilio's Messages API, for the provider's own ``TwilioHttpClient`` (timeouts, the
real HTTP stack): ``FakeTwilioServer`` answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` with a
Message resource (201), or holds its reply ``delay_s`` first.

``point_provider_at`` mounts, on the provider's own ``requests`` session (public attributes
``Client.http_client`` and ``TwilioHttpClient.session``), an adapter that sends what was meant for
``https://api.twilio.com`` to the fake instead; the timeout the provider set reaches the adapter as is.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import parse_qs

import requests.adapters

from tests.fakes.loopback import LoopbackServer
from tests.fakes.twilio_http import message_json

TWILIO_API = "https://api.twilio.com"


class FakeTwilioServer(LoopbackServer):
    name = "fake-twilio"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.forms: list[dict[str, str]] = []
        self._sids = (f"SM{n:032x}" for n in itertools.count(1))
        super().__init__(delay_s=delay_s)

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
        with self._lock:
            self.forms.append(form)
            sid = next(self._sids)
        if not path.endswith("/Messages.json"):
            return 404, {"code": 20404, "message": "not found", "status": 404}, {}
        return 201, message_json(sid, form), {}


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
