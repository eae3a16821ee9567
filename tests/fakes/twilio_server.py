"""A loopback fake of Twilio's Messages API, for the provider's own ``TwilioHttpClient`` (timeouts, the
real HTTP stack): ``FakeTwilioServer`` answers ``POST /2010-04-01/Accounts/{sid}/Messages.json`` with a
Message resource (201), or holds its reply ``delay_s`` first.

``point_provider_at`` mounts, on the provider's own ``requests`` session (public attributes
``Client.http_client`` and ``TwilioHttpClient.session``), an adapter that sends what was meant for
``https://api.twilio.com`` to the fake instead; the timeout the provider set reaches the adapter as is.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import requests.adapters

from tests.fakes.twilio_http import message_json

TWILIO_API = "https://api.twilio.com"


class FakeTwilioServer:
    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.forms: list[dict[str, str]] = []
        self.arrived = 0
        self._lock = threading.Lock()
        self._sids = (f"SM{n:032x}" for n in itertools.count(1))
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-twilio", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeTwilioServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.arrived += 1
                if server.delay_s:
                    time.sleep(server.delay_s)
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                with server._lock:
                    server.forms.append(form)
                    sid = next(server._sids)
                if not self.path.endswith("/Messages.json"):
                    status, body = 404, {"code": 20404, "message": "not found", "status": 404}
                else:
                    status, body = 201, message_json(sid, form)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


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
