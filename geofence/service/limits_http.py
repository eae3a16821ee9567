"""The HTTP edge: request bodies bounded in size (413) and in time (408), and text no database can
store refused (422). Request rates (429) are ``rate_limits``'."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from geofence.service.storable_text import body_problem, url_problem


class BodyGuard:
    """ASGI middleware: read the whole body first, within ``max_bytes`` and ``timeout_s``, and refuse
    text no database can store, before the app sees the request.

    - larger than ``max_bytes`` (declared by Content-Length, or counted as a chunked body streams): 413;
    - not received within ``timeout_s`` (a client that stops sending, a slow trickle): 408, and the
      connection is closed, so a body that never completes cannot hold a connection open;
    - NUL or a lone surrogate in the URL or the body (``storable_text``): 422 with the reason, as any
      other invalid value;
    - JSON too deeply nested to parse: 400 (as FastAPI answers a body it cannot parse).

    The app then receives the body in one message. Bodies are bounded by ``max_bytes``, so buffering
    them costs no more memory than the handlers' own ``await request.body()``. The location feed checks
    its fixes' text itself (``routes.locations``: a bad fix is rejected alone, not its whole batch).
    """

    SELF_CHECKED = ("/v1/locations",)

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (problem := url_problem(scope.get("path", ""), scope.get("query_string", b""))) is not None:
            await send_error(send, 422, f"{problem}: text no database can store")
            return
        try:
            body = await read_whole_body(scope, receive, self.max_bytes, self.timeout_s)
        except HTTPException as exc:
            await send_error(send, exc.status_code, exc.detail, exc.headers)
            return
        if body is None:  # the client went away
            return
        try:
            problem = None if scope["path"].endswith(self.SELF_CHECKED) else (
                body_problem(body, _header(scope, b"content-type"))
            )
        except RecursionError:
            await send_error(send, 400, "the JSON body is nested too deeply")
            return
        if problem is not None:
            await send_error(send, 422, problem)
            return
        await self.app(scope, _replay(body, receive), send)


async def read_whole_body(scope: Scope, receive: Receive, max_bytes: int, timeout_s: float) -> bytes | None:
    """The request's body (None if the client disconnected), or ``HTTPException`` 400 (bad
    Content-Length), 413 (over ``max_bytes``) or 408 (not received within ``timeout_s``; the answer
    closes the connection)."""
    declared = _content_length(scope)
    if declared == -1:
        raise HTTPException(400, detail="invalid Content-Length header")
    if max_bytes > 0 and declared is not None and declared > max_bytes:
        raise HTTPException(413, detail=f"request body larger than {max_bytes} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        # asyncio's own timeout: anyio's ``fail_after`` cost ~25 us a request more (its backend lookup
        # and cancel scope), on the event loop that every request goes through
        async with asyncio.timeout(timeout_s if timeout_s > 0 else None):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if max_bytes > 0 and size > max_bytes:
                    raise HTTPException(413, detail=f"request body larger than {max_bytes} bytes")
                parts.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(parts)
    except TimeoutError:
        raise HTTPException(
            408, detail=f"the request body was not received within {timeout_s:g} s",
            headers={"Connection": "close"},
        ) from None  # fmt: skip


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: the disconnect, when it comes

    return replay


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return ""


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
