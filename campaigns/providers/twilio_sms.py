"""SMS through Twilio's Messages API (twilio 9.x): one ``messages.create`` per delivery.

- **Sender.** A Messaging Service SID when configured (opt-outs then apply to the whole pool, and
  Advanced Opt-Out can add French keywords), otherwise a ``from_`` number.
- **Status callback.** Each message names our callback URL with ``?delivery=<id>``, so a callback that
  arrives before the dispatcher recorded the Twilio SID still finds its delivery (the signature covers
  the query string).
- **Validity period.** ``min(settings validity, seconds until the offer expires)``: Twilio drops a
  message still queued after that, so a stale offer is never delivered late.
- Twilio has no idempotency key: the outbox row's unique key is the only guard against duplicates.
- **Bounded sends.** The SDK's own HTTP client waits forever by default; the provider gives it
  ``settings.twilio.timeout_s`` (and no retries: a failure is retried by the outbox), so one send takes
  at most ``send_budget_s`` and never outlives the dispatcher's lease on the row.
- **Unknown outcomes.** A send that timed out after the request left raises ``OutcomeUnknown``; the
  outbox later asks ``lookup`` (the Messages list filtered by recipient, sender and date) whether
  Twilio accepted it, instead of sending it again.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from twilio.base import values
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from campaigns.providers.base import Channel, OutboundMessage, PermanentError, SendResult
from campaigns.providers.errors import from_twilio
from campaigns.providers.twilio_status import STATUS_CALLBACK_PATH, TWILIO_STATUS

_UNSET = values.unset
MAX_VALIDITY_S = 36000  # Twilio's range is 1..36000 s (10 h)
MIN_VALIDITY_S = 5  # below this the message would expire inside Twilio's own queue


@dataclass(frozen=True, slots=True)
class TwilioSender:
    messaging_service_sid: str | None = None
    from_number: str | None = None

    def __post_init__(self) -> None:
        if not (self.messaging_service_sid or self.from_number):
            raise ValueError("the twilio channel needs a messaging_service_sid or a from_number")

    @property
    def scope(self) -> str:
        """What a STOP applies to: the whole Messaging Service, or that one number."""
        return self.messaging_service_sid or self.from_number or ""


def validity_period_s(msg: OutboundMessage, *, configured_s: int, at: datetime) -> int:
    """Seconds Twilio may keep the message queued: never past the offer's expiry."""
    limit = min(configured_s, MAX_VALIDITY_S)
    if msg.expires_at is not None:
        left = math.floor((msg.expires_at - at).total_seconds())
        if left < MIN_VALIDITY_S:
            raise PermanentError("the offer expired before it could be sent", code="expired")
        limit = min(limit, left)
    return max(limit, MIN_VALIDITY_S)


def status_callback_for(base_url: str, delivery_id: str) -> str:
    separator = "&" if "?" in base_url else "?"
    return f"{base_url}{separator}{urlencode({'delivery': delivery_id})}"


def to_twilio_params(
    msg: OutboundMessage,
    *,
    sender: TwilioSender,
    status_callback_url: str | None,
    configured_validity_s: int,
    at: datetime,
) -> dict[str, Any]:
    """Keyword arguments for ``client.messages.create`` (pure)."""
    params: dict[str, Any] = {
        "to": msg.to,
        "body": msg.body,
        "validity_period": validity_period_s(msg, configured_s=configured_validity_s, at=at),
    }
    if sender.messaging_service_sid:
        params["messaging_service_sid"] = sender.messaging_service_sid
    else:
        params["from_"] = sender.from_number
    if status_callback_url:
        params["status_callback"] = status_callback_for(status_callback_url, msg.delivery_id)
    return params



class TwilioSmsProvider:
    """One Twilio ``Client`` per provider; ``http_client`` lets tests inject a fake transport."""

    name = "twilio"
    channel = Channel.SMS

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: TwilioSender,
        status_callback_url: str | None,
        validity_period_s: int = 3600,
        http_client: HttpClient | None = None,
        timeout_s: float = 10.0,
        base_url: str | None = None,
        clock: Callable[[], datetime],  # the service's clock.now: adapters read the wall clock there
    ) -> None:
        if not timeout_s > 0:
            raise ValueError("timeout_s must be positive")
        if http_client is None:
            http_client = TwilioHttpClient(timeout=timeout_s)
        self.client = Client(account_sid, auth_token, http_client=http_client)
        if base_url:  # a Twilio-compatible test server; the default is https://api.twilio.com
            self.client.api.base_url = base_url.rstrip("/")
        self.send_budget_s = 2 * timeout_s  # one attempt: connecting, then waiting for the answer
        self.sender = sender
        self.status_callback_url = status_callback_url
        self.validity_period_s = validity_period_s
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> TwilioSmsProvider:
        tw = settings.twilio
        if not tw.account_sid or tw.auth_token is None:
            raise ValueError("the twilio channel needs GEOFENCE_TWILIO__ACCOUNT_SID and __AUTH_TOKEN")
        callback = tw.status_callback_url or settings.public_base_url.rstrip("/") + STATUS_CALLBACK_PATH
        return cls(
            account_sid=tw.account_sid,
            auth_token=tw.auth_token.get_secret_value(),
            sender=TwilioSender(tw.messaging_service_sid, tw.from_number),
            status_callback_url=callback,
            validity_period_s=tw.validity_period_s,
            timeout_s=tw.timeout_s,
            base_url=tw.base_url,
            **overrides,
        )

    def send(self, msg: OutboundMessage) -> SendResult:
        at = self._clock()
        params = to_twilio_params(
            msg,
            sender=self.sender,
            status_callback_url=self.status_callback_url,
            configured_validity_s=self.validity_period_s,
            at=at,
        )
        try:
            message = self.client.messages.create(**params)
        except Exception as exc:  # every SDK/transport failure is mapped; nothing escapes unclassified
            raise from_twilio(exc, sender=self.sender.scope) from exc
        status = TWILIO_STATUS.get(str(message.status or "queued"), "queued")
        return SendResult(provider_message_id=str(message.sid), accepted_at=at, status=status)

    def lookup(self, msg: OutboundMessage, since: datetime) -> SendResult | None:
        """The message Twilio accepted for this delivery since ``since``, if any.

        Lists the recipient's messages from our sender (Twilio filters ``DateSent`` by day, so the
        day before ``since`` is included and the creation time is checked here) and matches the body.
        A message still queued has no ``date_sent`` yet and may be missed: the outbox then drops the
        delivery as ``ambiguous_send`` rather than send it again.
        """
        try:
            found = self.client.messages.list(
                to=msg.to,
                from_=self.sender.from_number or _UNSET,
                date_sent_after=since - timedelta(days=1),
                limit=50,
            )
        except Exception as exc:
            raise from_twilio(exc, sender=self.sender.scope) from exc
        for message in found:
            created = message.date_created
            if message.body != msg.body or (created is not None and created < since - timedelta(seconds=5)):
                continue
            if self.sender.messaging_service_sid and message.messaging_service_sid not in (
                None, self.sender.messaging_service_sid
            ):
                continue
            status = TWILIO_STATUS.get(str(message.status or "queued"), "queued")
            return SendResult(provider_message_id=str(message.sid), accepted_at=created, status=status)
        return None
