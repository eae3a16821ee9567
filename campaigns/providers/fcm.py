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
- **Bounded sends.** The SDK's own retry policy sleeps out every ``Retry-After`` (429 and 503) in the
  sending thread, up to four times, and its requests wait 120 s: a ``Retry-After: 30`` held one send for
  two minutes, past the dispatcher's lease, after which another dispatcher may claim the row and send it
  again. The provider gives the SDK a request timeout (``settings.fcm.timeout_s``) and ``SEND_RETRY``,
  which retries 500/503 twice with short backoff and leaves ``Retry-After`` to the outbox (the error
  carries it, the row is rescheduled), so one send takes at most ``send_budget_s``.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import firebase_admin
import requests.adapters
from firebase_admin import credentials, messaging
from urllib3.util.retry import Retry

from campaigns.providers.base import (
    Channel,
    OutboundMessage,
    PermanentError,
    ProviderError,
    SendResult,
)
from campaigns.providers.errors import from_fcm

MAX_SEND_EACH = 500  # firebase-admin raises ValueError above this
FCM_BASE_URL = "https://fcm.googleapis.com"
# At most three attempts: connection and read errors once each, 500/503 twice; sleeps 0 s then 1 s.
SEND_RETRY = Retry(
    total=2, connect=1, read=1, status=2, status_forcelist=[500, 503], backoff_factor=0.5,
    allowed_methods=None, raise_on_status=False, respect_retry_after_header=False,
)


def send_budget_s(timeout_s: float, retry: Retry = SEND_RETRY) -> float:
    """The longest one FCM request can take: every attempt may wait ``timeout_s`` to connect and as
    long for the answer, plus urllib3's backoff before each retry (``Retry.get_backoff_time``: none
    before the first, ``backoff_factor * 2 ** (k - 1)`` before the k-th)."""
    retries = retry.total or 0
    sleeps = sum(min(retry.backoff_max, retry.backoff_factor * 2 ** (k - 1)) for k in range(2, retries + 1))
    return (retries + 1) * 2 * timeout_s + sleeps


def bound_sdk_retries(app: firebase_admin.App) -> None:
    """Give the app's FCM session ``SEND_RETRY`` instead of the SDK's default policy (see the module
    docstring). Private firebase-admin API (``_get_messaging_service``, ``_client.session``), pinned with
    the SDK's minor version; tests/campaigns/test_providers_fcm_seam.py fails loudly when it moves."""
    session = messaging._get_messaging_service(app)._client.session
    session.mount(FCM_BASE_URL, requests.adapters.HTTPAdapter(pool_connections=100, pool_maxsize=100,
                                                              max_retries=SEND_RETRY))


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
        timeout_s: float = 5.0,
        app_name: str | None = None,
        clock: Callable[[], datetime],  # the service's clock.now: adapters read the wall clock there
    ) -> None:
        if not 1 <= batch_size <= MAX_SEND_EACH:
            raise ValueError(f"batch_size must be between 1 and {MAX_SEND_EACH}")
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        options: dict[str, object] = {"httpTimeout": timeout_s}
        if project_id:
            options["projectId"] = project_id
        self.app = firebase_admin.initialize_app(
            credential, options, name=app_name or f"geofence-fcm-{uuid.uuid4().hex[:12]}"
        )
        bound_sdk_retries(self.app)
        self.send_budget_s = send_budget_s(timeout_s)
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
            timeout_s=fcm.timeout_s,
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
