"""The channel contract: what the dispatcher hands a provider, and the only errors it reasons about."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Channel(StrEnum):
    PUSH = "push"
    SMS = "sms"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """A rendered message with its resolved recipient.

    ``to`` is an E.164 number (SMS) or an FCM registration token (push); it is resolved from the
    customer/device at send time and must never be logged in clear.
    """

    delivery_id: str
    idempotency_key: str
    channel: Channel
    to: str
    body: str
    title: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    platform: str | None = None  # "ios" | "android" for push
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str
    accepted_at: datetime | None = None
    status: str = "sent"


class ProviderError(Exception):
    """Base of the taxonomy; ``code`` keeps the provider's own error code for the record."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class RetryableError(ProviderError):
    """5xx, timeouts, FCM quota exceeded, Twilio 429: try again later."""

    def __init__(self, message: str, *, code: str | None = None, retry_after_s: float | None = None):
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class OutcomeUnknown(ProviderError):
    """The request may have reached the provider but its answer did not reach us (read timeout, a
    connection dropped after the request was written). Sending again could reach the person twice:
    the outbox settles such a send by asking the provider (``lookup``) or drops it (``ambiguous_send``)."""


class PermanentError(ProviderError):
    """Retrying will not help (bad payload, configuration, content rejected)."""


class InvalidRecipient(ProviderError):
    """The recipient cannot receive on this channel.

    ``kind``: ``token_unregistered`` (deactivate that FCM token), ``number_invalid`` (21211/21614),
    ``unsubscribed`` (21610: opted out for that sender).
    """

    def __init__(
        self, message: str, *, kind: str, code: str | None = None, sender: str | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.kind = kind
        # For ``unsubscribed``: the sender (Messaging Service SID or number) the opt-out applies to;
        # a STOP sent to one sender does not opt the number out of the others.
        self.sender = sender


TOKEN_UNREGISTERED = "token_unregistered"
NUMBER_INVALID = "number_invalid"
UNSUBSCRIBED = "unsubscribed"


class NotificationProvider(Protocol):
    """``send_budget_s``: the longest one ``send`` can take, timeouts and the SDK's own retries included.
    The dispatcher starts a send only while its lease on the row has that long left, so a slow provider
    can never make two dispatchers send the same row.

    ``send`` raises ``OutcomeUnknown`` whenever the request may have arrived without an answer; it never
    retries such a request itself. A provider that can list what it accepted also has
    ``lookup(msg, since) -> SendResult | None`` (see ``Reconciler``)."""

    name: str
    channel: Channel
    send_budget_s: float

    def send(self, msg: OutboundMessage) -> SendResult: ...


class Reconciler(Protocol):
    """A provider that can tell whether a message it may have accepted exists (Twilio's message list)."""

    def lookup(self, msg: OutboundMessage, since: datetime) -> SendResult | None: ...
