"""The opaque incremental-export cursor: a keyset position (change time, row id), base64url-encoded.

Clients treat it as an opaque string: they pass back what the last export returned. Inside it is
``{"v": 1, "k": kind, "t": "<UTC ISO-8601>", "id": "<row id>"}``; the kind is checked so a cursor of
one export cannot silently skip rows of another. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime

VERSION = 1


class CursorError(ValueError):
    """The ``since`` value is not a cursor this export produced (HTTP 400, CLI message)."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """Keyset position: rows strictly after (``changed_at``, ``row_id``) come next."""

    changed_at: datetime
    row_id: str


def encode_cursor(kind: str, cursor: Cursor) -> str:
    payload = {
        "v": VERSION,
        "k": kind,
        "t": cursor.changed_at.astimezone(UTC).isoformat(),
        "id": cursor.row_id,
    }
    raw = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, token: str | None) -> Cursor | None:
    """The position encoded in ``token``, or None for an empty token (a full export).

    Raises :class:`CursorError` with a reason for anything malformed, for another export kind, or
    for a naive timestamp.
    """
    if token is None or not token.strip():
        return None
    token = token.strip()
    if len(token) > 1024:
        raise CursorError("cursor too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise CursorError("malformed cursor (pass back the value an export returned)") from exc
    if not isinstance(payload, dict) or payload.get("v") != VERSION:
        raise CursorError("unknown cursor version")
    if payload.get("k") != kind:
        raise CursorError(f"this cursor belongs to the {payload.get('k')!r} export, not {kind!r}")
    row_id, stamp = payload.get("id"), payload.get("t")
    if not isinstance(row_id, str) or not isinstance(stamp, str):
        raise CursorError("malformed cursor")
    try:
        changed_at = datetime.fromisoformat(stamp)
    except ValueError as exc:
        raise CursorError("malformed cursor timestamp") from exc
    if changed_at.tzinfo is None:
        raise CursorError("cursor timestamp has no time zone")
    try:
        return Cursor(changed_at.astimezone(UTC), row_id)
    except OverflowError as exc:  # e.g. year 1 with a positive offset
        raise CursorError("cursor timestamp out of range") from exc
