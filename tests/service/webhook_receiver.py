"""A loopback webhook receiver for tests: verifies every request with the reference
``standardwebhooks`` library and records what it accepted, in arrival order."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    webhook_id: str
    body: dict  # type: ignore[type-arg]
    at: float = field(default_factory=time.perf_counter)  # when it arrived (benchmarks)
    host: str = ""  # the Host header it came with


@dataclass
class Receiver:
    secret: str = ""
    status: int = 200  # what it answers (503: down, 410: gone, 429 with retry_after)
    retry_after: str | None = None
    fail_events: set[str] = field(default_factory=set)  # answered 500 whatever ``status`` says
    accepted: list[Received] = field(default_factory=list)
    attempts: list[Received] = field(default_factory=list)  # every verified request, answered or not
    bad_signatures: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def event_ids(self) -> list[str]:
        return [r.body["data"]["event_id"] for r in self.accepted]


def start_receiver() -> Receiver:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["content-length"])
            body = self.rfile.read(length)
            if len(body) < length:  # the sender died mid-request (kill -9): nothing was delivered, nor
                self.close_connection = True  # answered; not a bad signature
                return
            try:
                parsed = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
            except WebhookVerificationError:
                receiver.bad_signatures += 1
                self.send_response(400)
                self.end_headers()
                return
            got = Received(self.headers["webhook-id"], parsed, host=self.headers.get("host", ""))
            receiver.attempts.append(got)
            status = 500 if parsed["data"]["event_id"] in receiver.fail_events else receiver.status
            if 200 <= status < 300:
                receiver.accepted.append(got)
            self.send_response(status)
            if receiver.retry_after is not None:
                self.send_header("Retry-After", receiver.retry_after)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    receiver.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.server.serve_forever, daemon=True).start()
    return receiver


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A receiver for the block's length, shut down and its socket closed afterwards (the tests' fixture)."""
    receiver = start_receiver()
    try:
        yield receiver
    finally:
        assert receiver.server is not None
        receiver.server.shutdown()
        receiver.server.server_close()


__all__ = ["Receiver", "running_receiver", "start_receiver"]
