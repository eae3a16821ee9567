"""Push through Firebase Cloud Messaging (HTTP v1) with firebase-admin; one payload for Android and iOS.

Why these choices:

- **Target field.** The apps register ``FirebaseMessaging.getToken()`` registration tokens, which the
  FCM v1 API expects in ``message.token``; ``Message(fid=...)`` writes ``message.fid``, which is for
  Firebase installation ids (apps with FID registration on). firebase-admin >= 7.5 deprecates
  ``Message(token=...)`` in favour of ``fid=``, but sending a registration token as a ``fid`` would put
  it in the wrong wire field. So ``settings.fcm.target_field`` chooses, default ``token``, and the
  deprecation is silenced at this one call site only.
- **Dedupe.** FCM has no idempotency key. A collapse key / ``apns-collapse-id`` / Android notification
  tag derived from the delivery's idempotency key makes a duplicate send replace, not add.
- **Expiry.** ``ttl`` / ``apns-expiration`` come from the offer's ``expires_at`` so a phone that was
  offline does not show a stale offer later.
- **Threads.** ``send_each`` starts one thread per message, so bursts go in chunks (default 100).
- **Init once.** The SDK app is created by the provider (a named app), never at import time.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import firebase_admin
from firebase_admin import credentials, messaging

from campaigns.providers.base import (
    Channel,
    OutboundMessage,
    PermanentError,
    ProviderError,
    SendResult,
)
from campaigns.providers.errors import from_fcm

MAX_SEND_EACH = 500  # firebase-admin raises ValueError above this


def collapse_id(idempotency_key: str) -> str:
    """A stable id (32 hex chars, < APNs' 64-byte limit) that reveals nothing about the recipient."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def remaining_lifetime(msg: OutboundMessage, at: datetime) -> timedelta | None:
    """Time left before the offer expires; raises ``PermanentError`` once it has expired."""
    if msg.expires_at is None:
        return None
    left = msg.expires_at - at
    if left < timedelta(seconds=1):
        raise PermanentError("the offer expired before it could be sent", code="expired")
    return timedelta(seconds=int(left.total_seconds()))


def to_fcm_message(msg: OutboundMessage, *, at: datetime, target: str = "token") -> messaging.Message:
    """Build the SDK message (pure): notification, Android and APNs payloads, string data."""
    if target not in ("token", "fid"):
        raise ValueError(f"target must be 'token' or 'fid', not {target!r}")
    key = collapse_id(msg.idempotency_key)
    ttl = remaining_lifetime(msg, at)
    data = {str(k): str(v) for k, v in msg.data.items()}
    data.setdefault("delivery_id", msg.delivery_id)
    apns_headers = {
        "apns-collapse-id": key,
        "apns-push-type": "alert",
        "apns-priority": "10",
    }
    if msg.expires_at is not None:
        apns_headers["apns-expiration"] = str(int(msg.expires_at.timestamp()))
    kwargs = {
        "data": data,
        "notification": messaging.Notification(title=msg.title, body=msg.body),
        "android": messaging.AndroidConfig(
            collapse_key=key,
            priority="high",
            ttl=ttl,
            notification=messaging.AndroidNotification(tag=key),
        ),
        "apns": messaging.APNSConfig(
            headers=apns_headers,
            payload=messaging.APNSPayload(aps=messaging.Aps(sound="default", thread_id=key)),
        ),
    }
    if target == "fid":
        return messaging.Message(fid=msg.to, **kwargs)
    with warnings.catch_warnings():
        # firebase-admin 7.5+ deprecates Message.token, but a registration token belongs in the
        # v1 `token` field; `fid` is a different identifier (see the module docstring).
        warnings.filterwarnings("ignore", "Message.token is deprecated", DeprecationWarning)
        return messaging.Message(token=msg.to, **kwargs)


def _now() -> datetime:
    from geofence.service import clock

    return clock.now()


class FcmProvider:
    """Sends push messages through one named firebase-admin app (created here, deleted by ``close``)."""

    name = "fcm"
    channel = Channel.PUSH

    def __init__(
        self,
        *,
        credential: credentials.Base,
        project_id: str | None = None,
        target: str = "token",
        batch_size: int = 100,
        app_name: str | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        if not 1 <= batch_size <= MAX_SEND_EACH:
            raise ValueError(f"batch_size must be between 1 and {MAX_SEND_EACH}")
        options = {"projectId": project_id} if project_id else {}
        self.app = firebase_admin.initialize_app(
            credential, options, name=app_name or f"geofence-fcm-{uuid.uuid4().hex[:12]}"
        )
        self.target = target
        self.batch_size = batch_size
        self._clock = clock
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings, **overrides) -> FcmProvider:  # type: ignore[no-untyped-def]
        """Credentials from the service-account file named in ``settings.fcm.credentials_file``."""
        fcm = settings.fcm
        credential = overrides.pop("credential", None)
        if credential is None:
            if fcm.credentials_file is None:
                raise ValueError(
                    "the fcm channel needs GEOFENCE_FCM__CREDENTIALS_FILE (a service-account JSON file)"
                )
            credential = credentials.Certificate(str(fcm.credentials_file))
        return cls(
            credential=credential,
            project_id=fcm.project_id,
            target=fcm.target_field,
            batch_size=fcm.batch_size,
            **overrides,
        )

    def send(self, msg: OutboundMessage) -> SendResult:
        at = self._clock()
        message = to_fcm_message(msg, at=at, target=self.target)
        try:
            message_id = messaging.send(message, app=self.app)
        except Exception as exc:  # every SDK failure is mapped; nothing escapes unclassified
            raise from_fcm(exc) from exc
        return SendResult(provider_message_id=message_id, accepted_at=at)

    def send_batch(self, msgs: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        """Send many, ``batch_size`` per ``send_each`` call; one result or error per message, in order."""
        results: list[SendResult | ProviderError] = []
        for start in range(0, len(msgs), self.batch_size):
            results.extend(self._send_chunk(msgs[start : start + self.batch_size]))
        return results

    def _send_chunk(self, chunk: Sequence[OutboundMessage]) -> list[SendResult | ProviderError]:
        at = self._clock()
        outcome: list[SendResult | ProviderError | None] = [None] * len(chunk)
        built: list[tuple[int, messaging.Message]] = []
        for i, msg in enumerate(chunk):
            try:
                built.append((i, to_fcm_message(msg, at=at, target=self.target)))
            except ProviderError as exc:
                outcome[i] = exc
        if built:
            try:
                batch = messaging.send_each([m for _, m in built], app=self.app)
                responses = batch.responses
            except Exception as exc:
                error = from_fcm(exc)
                responses = None
                for i, _ in built:
                    outcome[i] = error
            if responses is not None:
                for (i, _), response in zip(built, responses, strict=True):
                    if response.success:
                        outcome[i] = SendResult(provider_message_id=response.message_id, accepted_at=at)
                    else:
                        outcome[i] = from_fcm(response.exception)
        return [o for o in outcome if o is not None]

    def close(self) -> None:
        """Delete the SDK app (its HTTP sessions); the provider cannot send afterwards."""
        with self._lock:
            if self.app is not None:
                firebase_admin.delete_app(self.app)
                self.app = None  # type: ignore[assignment]
