"""Abuse limits at the HTTP edge: request body size (413). Request rates (429) are ``rate_limits``'."""

from __future__ import annotations

import json
from collections.abc import Mapping

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
