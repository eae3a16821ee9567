"""Abuse limits at the HTTP edge: request body size (413) and request rates (429 + ``Retry-After``).

Rates are token buckets held in memory by each API process. That keeps the embedded default free of
any extra server; the price is that N uvicorn workers (or N replicas) together allow N times the
configured rate, so configure the per-process figure as ``wanted_rate / processes``. The buckets are
keyed by API key id and by device id (see ``security``), never by IP: phones behind carrier NAT share
addresses.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geofence.service import clock


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_s: float


def take_token(
    bucket: Bucket | None, *, now_s: float, rate_per_s: float, burst: int
) -> tuple[Bucket, float]:
    """Pure token bucket: spend one token. Returns the new bucket and the seconds to wait (0 = allowed)."""
    if bucket is None:
        bucket = Bucket(tokens=float(burst), updated_s=now_s)
    elapsed_s = max(0.0, now_s - bucket.updated_s)
    tokens = min(float(burst), bucket.tokens + elapsed_s * rate_per_s)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now_s), 0.0
    return Bucket(tokens, now_s), (1.0 - tokens) / rate_per_s


class RateLimiter:
    """Named token buckets in memory (thread-safe; bounded: least recently used buckets are dropped)."""

    def __init__(self, *, max_buckets: int = 100_000) -> None:
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()
        self._lock = threading.Lock()
        self._max_buckets = max_buckets

    def retry_after_s(self, name: str, *, rate_per_s: float, burst: int) -> float:
        """Spend a token from bucket ``name``; 0 when allowed, else the seconds until one is available."""
        if rate_per_s <= 0 or burst <= 0:
            return 0.0
        now_s = clock.now().timestamp()
        with self._lock:
            bucket, wait_s = take_token(
                self._buckets.get(name), now_s=now_s, rate_per_s=rate_per_s, burst=burst
            )
            self._buckets[name] = bucket
            self._buckets.move_to_end(name)
            while len(self._buckets) > self._max_buckets:
                self._buckets.popitem(last=False)
        return wait_s

    def check(self, name: str, *, rate_per_s: float, burst: int, what: str) -> None:
        """Raise 429 with ``Retry-After`` (whole seconds, at least 1) when bucket ``name`` is empty."""
        wait_s = self.retry_after_s(name, rate_per_s=rate_per_s, burst=burst)
        if wait_s > 0:
            raise HTTPException(
                429,
                detail=f"rate limit exceeded for this {what}; retry later",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so FastAPI's body parsing passes it through as 413."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=f"request body larger than {max_bytes} bytes")


class BodySizeLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` with 413, by Content-Length or while streaming.

    A chunked body has no Content-Length, so the bytes are counted as the app reads them; the app's
    read fails once the limit is passed and this middleware answers 413 instead (the app reads the
    whole body before it answers, so no response has started yet).
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.max_bytes <= 0:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await send_error(send, 400, "invalid Content-Length header")
            return
        if declared is not None and declared > self.max_bytes:
            await send_error(send, 413, self._reason())
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:  # the app answered before reading everything; nothing more we can say
                return
            await send_error(send, 413, self._reason())

    def _reason(self) -> str:
        return str(BodyTooLarge(self.max_bytes).detail)


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent, -1 when unparseable."""
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


async def send_error(
    send: Send, status: int, reason: object, headers: Mapping[str, str] | None = None
) -> None:
    """An error answer as FastAPI gives one (``{"detail": reason}``), for plain ASGI code."""
    body = json.dumps({"detail": reason}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
