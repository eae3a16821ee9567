"""What the loopback fakes of provider APIs share: an ``http.server`` on 127.0.0.1 in a daemon thread,
started and stopped by ``with``, answering each POST with JSON after holding it ``delay_s``.

``Chaos`` makes a share of the requests fail (503, nothing accepted) or be held past a client's
timeout and then accepted anyway, drawn from a seeded random generator."""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up waiting
            super().handle_error(request, client_address)


@dataclass
class Chaos:
    unavailable_rate: float = 0.0  # answered 503 at once, nothing accepted
    hold_rate: float = 0.0  # held ``hold_s`` (past the client's timeout), then accepted all the same
    hold_s: float = 0.0
    seed: int = 0


class LoopbackServer:
    """Subclasses answer with ``_answer(path, headers, body) -> (status, json body, extra headers)``.

    ``arrived`` counts the requests as they come in (before the delay), ``max_in_flight`` the most held at
    once: a client that gave up waiting still shows there."""

    name = "fake"
    content_type = "application/json"

    def __init__(self, *, delay_s: float = 0.0, chaos: Chaos | None = None) -> None:
        self.delay_s = delay_s
        self.chaos = chaos
        self._random = random.Random(chaos.seed if chaos else 0)
        self.arrived = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name=self.name, daemon=True
        )

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def _get(self, path: str) -> tuple[int, Any]:
        return 404, {"message": "not found"}

    def _unavailable(self) -> Any:
        return {"message": "unavailable"}

    def _chaotic(self, path: str) -> bool:
        return True

    def _draw(self, path: str) -> tuple[bool, float]:
        """(answer 503, extra hold) for one request."""
        if self.chaos is None or not self._chaotic(path):
            return False, 0.0
        with self._lock:
            r = self._random.random()
        if r < self.chaos.unavailable_rate:
            return True, 0.0
        if r < self.chaos.unavailable_rate + self.chaos.hold_rate:
            return False, self.chaos.hold_s
        return False, 0.0

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
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
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                fail, hold_s = server._draw(self.path)
                if server.delay_s or hold_s:
                    time.sleep(server.delay_s + hold_s)
                if fail:
                    status, body, headers = 503, server._unavailable(), {}
                else:
                    status, body, headers = server._answer(self.path, dict(self.headers.items()), raw)
                with server._lock:
                    server.in_flight -= 1
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                status, body = server._get(self.path)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", server.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
