"""Structured logs: one JSON object per line, with phone numbers and push tokens masked.

Masking happens in a handler filter on the *formatted* message (so ``log.info("to %s", phone)`` is
caught as well as f-strings) and again on exception text and ``extra`` fields. Masks keep a short
tail so operators can still correlate lines: ``+33******78``, ``fcm:…Qk9x``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from geofence.service.settings import Settings

# E.164: "+" then 7..15 digits (no leading 0), optionally written with spaces/dots/dashes between
# groups as humans and some SDK errors do. Not preceded by a digit/word char so ids are left alone.
_PHONE = re.compile(r"(?<![\w+])(?:\+|%2[Bb])[1-9](?:[\s.\-]?\d){6,14}(?!\d)")  # %2B: URL-encoded "+"
# FCM registration tokens: "<instance id>:<APA91b…>" (~150+ chars), or the long bare APA91b part.
_FCM = re.compile(r"[A-Za-z0-9_\-]{10,}:APA91[A-Za-z0-9_\-]{20,}|APA91[A-Za-z0-9_\-]{20,}|"
                  r"(?<![A-Za-z0-9_\-])[A-Za-z0-9_\-]{20,}:[A-Za-z0-9_\-]{100,}")
# Our own credentials must never reach a log line either.
_CREDENTIAL = re.compile(r"gf[kd]_[A-Za-z0-9_\-]+(?:\.[0-9a-f]+)?")

# uvicorn's color_message duplicates msg with ANSI escapes: not for JSON lines
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "color_message",
}
_HANDLER_NAME = "geofence"


def _mask_phone(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0).replace("%2B", "+").replace("%2b", "+"))
    return f"+{digits[:2]}{'*' * max(0, len(digits) - 4)}{digits[-2:]}"


def mask(text: str) -> str:
    """Mask E.164 phone numbers, FCM tokens and our API/device tokens in ``text``."""
    text = _CREDENTIAL.sub(lambda m: m.group(0)[:4] + "…", text)
    text = _FCM.sub(lambda m: "fcm:…" + m.group(0)[-4:], text)
    return _PHONE.sub(_mask_phone, text)


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _mask_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(v) for v in value]
    return value


class MaskingFilter(logging.Filter):
    """Replace the record's message by its masked rendering (args are folded in first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the line
            message = f"{record.msg!r} {record.args!r}"
        record.msg = mask(message)
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _mask_value(value))
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                payload[key] = _mask_value(value)
        if record.exc_info:
            payload["exc"] = mask(self.formatException(record.exc_info))
        return json.dumps(payload, default=str, ensure_ascii=False)


class MaskingTextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (test runners swap and close it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:  # type: ignore[override]
        return sys.stderr


def build_handler(settings: Settings, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(
        JsonFormatter()
        if settings.log.json_format
        else MaskingTextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    return handler


def configure_logging(settings: Settings, stream: Any = None) -> logging.Handler:
    """Install our handler on the root logger (idempotent) and route uvicorn's loggers through it."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = build_handler(settings, stream)
    root.addHandler(handler)
    root.setLevel(settings.log.level.upper())
    # uvicorn installs its own unmasked handlers; the access log line holds query strings. It also sets
    # its loggers' levels (INFO): inherit ours instead, or GEOFENCE_LOG__LEVEL=WARNING still writes a line
    # per request.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers = []
        uv.propagate = True
        uv.setLevel(logging.NOTSET)
    return handler
