"""Console sign-in: an admin API key exchanged for an encrypted session cookie, and CSRF tokens.

The cookie carries the key itself (Fernet: AES-128-CBC + HMAC-SHA256), so every API call the console
makes is checked exactly as the key's own calls would be (scope, revocation, rate limits) and any API
process with the same ``hash_key`` can read it: no session table. The page never sees the key
(HttpOnly). The CSRF token is derived from the session (HMAC), sent back in a header or form field.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken

COOKIE = "geofence_console"
LANG_COOKIE = "geofence_console_lang"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class ConsoleSession:
    api_key: str
    key_id: str
    nonce: str  # random per sign-in: CSRF tokens of an earlier session do not carry over
    issued_at_s: int


class SessionCodec:
    """Seal and open session cookies; derive and check CSRF tokens."""

    def __init__(self, secret: str, *, max_age_s: int) -> None:
        digest = hmac.new(secret.encode(), b"geofence-console-session", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._csrf_key = hmac.new(secret.encode(), b"geofence-console-csrf", hashlib.sha256).digest()
        self.max_age_s = max_age_s

    def seal(self, session: ConsoleSession) -> str:
        payload = {"k": session.api_key, "i": session.key_id, "n": session.nonce, "t": session.issued_at_s}
        return self._fernet.encrypt_at_time(json.dumps(payload).encode(), session.issued_at_s).decode()

    def open(self, cookie: str | None, *, now_s: int | None = None) -> ConsoleSession | None:
        """The session in ``cookie``, or None if absent, forged, or older than ``max_age_s``."""
        if not cookie:
            return None
        now_s = int(time.time()) if now_s is None else now_s
        try:
            raw = self._fernet.decrypt_at_time(cookie.encode(), self.max_age_s, now_s)
            data = json.loads(raw)
            return ConsoleSession(str(data["k"]), str(data["i"]), str(data["n"]), int(data["t"]))
        except (InvalidToken, ValueError, KeyError, TypeError):
            return None

    def csrf_token(self, session: ConsoleSession) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: ConsoleSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), token or "")
