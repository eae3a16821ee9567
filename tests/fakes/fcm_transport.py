"""A loopback fake of the FCM HTTP v1 endpoint, and the ONE place that touches firebase-admin internals.

``FakeFcmServer`` is a real HTTP server on 127.0.0.1 (``http.server`` in a thread) that answers
``POST /v1/projects/{project}/messages:send`` like FCM does: ``{"name": ...}`` on success, or a
google.rpc error body with ``details[].errorCode`` (UNREGISTERED, QUOTA_EXCEEDED, ...). Replies are
scripted per recipient (token or fid), so concurrent ``send_each`` threads stay deterministic.

The seam (``point_app_at``) is private firebase-admin API, pinned by ``firebase-admin>=7.7,<7.8``:

- ``messaging._get_messaging_service(app)`` returns the app's ``_MessagingService``;
- its ``_fcm_url`` attribute is the send URL (``FCM_URL.format(project_id)``), replaced by ours;
- its ``_client.session`` (a google-auth ``AuthorizedSession``) gets an adapter for our base URL with
  the retry policy the app has for the real FCM URL minus the backoff sleeps (same retries, same
  statuses): ``campaigns.providers.fcm.SEND_RETRY`` for a provider's app (the provider mounts it through
  the same private attributes), the SDK's ``DEFAULT_RETRY_CONFIG`` for a bare app.

``tests/campaigns/test_providers_fcm_seam.py`` fails loudly when any of these move.

Credentials: ``AnonymousCredential`` yields google-auth ``AnonymousCredentials``: no OAuth token is ever
fetched and no ``Authorization`` header is sent, so nothing reaches Google. For a real worker process,
``service_account_file`` writes a service-account JSON whose ``token_uri`` is this fake's ``/token``.

``accepted`` counts the messages the fake accepted per recipient (answered or not: a client that timed
out on a held request still had its message accepted).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google.auth.credentials
import requests.adapters
from firebase_admin import credentials, messaging

from tests.fakes.loopback import Chaos, LoopbackServer

PROJECT = "demo-test"
FCM_SEND_URL = "https://fcm.googleapis.com/v1/projects/{}/messages:send"
_SEND_PATH = re.compile(r"^/v1/projects/(?P<project>[^/]+)/messages:send$")


class AnonymousCredential(credentials.Base):
    """A firebase-admin credential that never fetches a token (google-auth AnonymousCredentials)."""

    def get_credential(self) -> google.auth.credentials.Credentials:
        return google.auth.credentials.AnonymousCredentials()


@dataclass(frozen=True)
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def fcm_error(status: int, rpc_status: str, error_code: str | None, message: str = "") -> dict[str, Any]:
    """A google.rpc.Status body as FCM v1 returns it."""
    error: dict[str, Any] = {"code": status, "message": message or rpc_status, "status": rpc_status}
    if error_code is not None:
        error["details"] = [
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}
        ]
    return {"error": error}


def unregistered() -> Reply:
    return Reply(404, fcm_error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."))


def not_found_without_error_code() -> Reply:
    return Reply(404, fcm_error(404, "NOT_FOUND", None, "Requested entity was not found."))


def quota_exceeded(retry_after: str | None = None) -> Reply:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return Reply(429, fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded."), headers)


def unavailable() -> Reply:
    return Reply(503, fcm_error(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable."))


def sender_id_mismatch() -> Reply:
    return Reply(403, fcm_error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"))


def invalid_argument() -> Reply:
    return Reply(400, fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid JSON payload"))


@dataclass(frozen=True)
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def message(self) -> dict[str, Any]:
        return self.body["message"]  # type: ignore[no-any-return]

    @property
    def recipient(self) -> str | None:
        return self.message.get("token") or self.message.get("fid")


class FakeFcmServer(LoopbackServer):
    """Start with ``with FakeFcmServer() as fcm:``; script with ``fcm.script(token, reply, ...)``."""

    name = "fake-fcm"
    content_type = "application/json; charset=UTF-8"

    def __init__(self, *, delay_s: float = 0.0, chaos: Chaos | None = None) -> None:
        # delay: concurrent sends overlap, are counted
        self.requests: list[Recorded] = []
        self.accepted: Counter[str] = Counter()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._counter = 0
        super().__init__(delay_s=delay_s, chaos=chaos)

    def _chaotic(self, path: str) -> bool:
        return _SEND_PATH.match(path) is not None

    def _unavailable(self) -> Any:
        return unavailable().body

    def send_url(self, project: str) -> str:
        return f"{self.base_url}/v1/projects/{project}/messages:send"

    def script(self, recipient: str, *replies: Reply) -> None:
        """Replies for ``recipient``, in order; afterwards the recipient gets successes."""
        with self._lock:
            self._scripts[recipient].extend(replies)

    def requests_for(self, recipient: str) -> list[Recorded]:
        return [r for r in self.requests if r.recipient == recipient]

    def _reply_for(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        if path == "/token":  # google-auth's service-account token exchange
            token = {"access_token": "fake-access-token", "expires_in": 3600, "token_type": "Bearer"}
            return Reply(200, token)
        match = _SEND_PATH.match(path)
        if match is None:
            return Reply(404, fcm_error(404, "NOT_FOUND", None, f"{path} was not found"))
        try:
            body = json.loads(raw)
        except ValueError:
            return invalid_argument()
        recorded = Recorded(path, headers, body)
        with self._lock:
            self.requests.append(recorded)
            queue = self._scripts.get(recorded.recipient or "")
            if queue:
                return queue.popleft()
            self._counter += 1
            self.accepted[recorded.recipient or ""] += 1
            name = f"projects/{match['project']}/messages/{self._counter}"
        return Reply(200, {"name": name})

    def _answer(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any, dict[str, str]]:
        reply = self._reply_for(path, headers, raw)
        return reply.status, reply.body, reply.headers


def messaging_service(app: Any) -> Any:
    """The app's private ``_MessagingService`` (created on first use)."""
    return messaging._get_messaging_service(app)


def point_app_at(app: Any, server: FakeFcmServer, project: str = PROJECT) -> None:
    """Send this firebase-admin app's FCM traffic to the loopback fake (the whole seam)."""
    service = messaging_service(app)
    service._fcm_url = server.send_url(project)
    # Keep the retry policy the app has for the real FCM URL (``campaigns.providers.fcm.SEND_RETRY`` for
    # a provider's app, the SDK's default for a bare one) but drop the backoff sleeps: tests stay fast.
    session = service._client.session
    retry = session.get_adapter(FCM_SEND_URL.format(project)).max_retries.new(backoff_factor=0)
    adapter = requests.adapters.HTTPAdapter(pool_connections=100, pool_maxsize=100, max_retries=retry)
    session.mount(server.base_url, adapter)  # same pool size as the SDK's FCM adapter


def service_account_file(path: Path, server: FakeFcmServer, project: str = PROJECT) -> Path:
    """A service-account JSON (a fresh RSA key) whose token exchange goes to the fake, not Google."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "fake", "private_key": pem,
        "client_email": f"fake@{project}.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": f"{server.base_url}/token",
    }))
    return path
