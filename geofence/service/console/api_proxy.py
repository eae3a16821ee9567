"""The console's JSON calls: forwarded in-process to the ``/v1`` API with the session's key.

The page never holds the key, and the API applies its own validation, scopes and rate limits, so the
console adds no rule of its own. Only the routes the console needs are forwarded (customers' records,
which hold phone numbers, are not), and the answers about people (deliveries, consents, dry runs,
stats) are scrubbed of phone numbers and push tokens. Zones and campaigns are not: they hold no
customer's data, and the page sends them back on edit (a store's number in a zone's metadata, or one
in an offer's text, must not come back masked).
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.types import ASGIApp, Message

from campaigns.phones import mask_phone, mask_token

# (method, path under /v1, whether the answer is about people) the console may call
ALLOWED: tuple[tuple[str, re.Pattern[str], bool], ...] = tuple(
    (method, re.compile(pattern), personal)
    for method, pattern, personal in (
        ("GET", r"zones", False), ("POST", r"zones", False), ("POST", r"zones/import", False),
        ("GET", r"zones/export", False), ("GET", r"zones/[^/]+", False), ("PUT", r"zones/[^/]+", False),
        ("DELETE", r"zones/[^/]+", False),
        ("GET", r"campaigns", False), ("POST", r"campaigns", False), ("GET", r"campaigns/[^/]+", False),
        ("PUT", r"campaigns/[^/]+", False), ("POST", r"campaigns/[^/]+/status", False),
        ("POST", r"campaigns/[^/]+/dry-run", True), ("GET", r"campaigns/[^/]+/stats", True),
        ("GET", r"deliveries", True), ("GET", r"customers/[^/]+/consents", True),
    )
)
_PHONE_KEYS = {"phone", "phone_e164", "to", "from", "to_number", "from_number", "msisdn"}
_TOKEN_KEYS = {"push_token", "token", "fcm_token"}
_PHONE_IN_TEXT = re.compile(r"\+\d{8,15}")


def allowed(method: str, path: str) -> bool:
    return any(method == m and p.fullmatch(path) for m, p, _ in ALLOWED)


def personal(method: str, path: str) -> bool:
    """Whether the answer may name people (scrubbed); unknown routes count as personal."""
    return next((s for m, p, s in ALLOWED if method == m and p.fullmatch(path)), True)


def scrub(value: Any, key: str | None = None) -> Any:
    """``value`` with phone numbers and push tokens masked, at any depth and inside free text."""
    if isinstance(value, dict):
        return {k: scrub(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        if key in _PHONE_KEYS:
            return mask_phone(value)
        if key in _TOKEN_KEYS:
            return mask_token(value)
        return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), value)
    return value


async def call_api(
    app: ASGIApp, method: str, path: str, *, api_key: str, query: str = "", body: bytes = b"",
    content_type: str = "application/json", lang: str = "en",
) -> tuple[int, Any, dict[str, str]]:
    """Call ``/v1/<path>`` on ``app`` in this process; returns (status, JSON or text, headers).

    The answer is scrubbed unless the route is one of the non-personal ones in ``ALLOWED``."""
    headers = [
        (b"authorization", f"Bearer {api_key}".encode()),
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"accept-language", lang.encode()),
        (b"host", b"console.internal"),
    ]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": f"/v1/{path}", "raw_path": f"/v1/{path}".encode(), "root_path": "",
        "query_string": query.encode(), "headers": headers, "client": ("127.0.0.1", 0),
        "server": ("console.internal", 80),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    status = 500
    out_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers.update({k.decode().lower(): v.decode() for k, v in message.get("headers", [])})
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    raw = b"".join(chunks)
    if not raw:
        return status, None, out_headers
    clean = scrub if personal(method, path.split("?")[0]) else _as_is
    try:
        return status, clean(json.loads(raw)), out_headers
    except ValueError:
        return status, clean(raw.decode("utf-8", "replace")), out_headers


def _as_is(value: Any) -> Any:
    return value
