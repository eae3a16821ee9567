"""Map the SDKs' real exceptions onto the engine's taxonomy (retryable / permanent / invalid recipient).

The dispatcher reasons only about :mod:`campaigns.providers.base` errors; this module is the single
place that knows firebase-admin's and twilio's exception classes and codes. Messages are scrubbed:
Twilio puts the phone number in its error text, and nothing here may log a recipient in clear.

References: FCM v1 error codes https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode ;
Twilio error dictionary https://www.twilio.com/docs/api/errors .
"""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from campaigns.providers.base import (
    NUMBER_INVALID,
    TOKEN_UNREGISTERED,
    UNSUBSCRIBED,
    InvalidRecipient,
    OutcomeUnknown,
    PermanentError,
    ProviderError,
    RetryableError,
)

if TYPE_CHECKING:  # requests (the SDKs' transport) is imported where an SDK's error is mapped, like the
    import requests  # SDKs: the default outbox channel never loads it (~0.2 s of every start-up)

# Twilio codes (https://www.twilio.com/docs/api/errors/<code>).
TWILIO_UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient": STOP to that sender
TWILIO_NUMBER_INVALID = frozenset({21211, 21614})  # invalid 'To'; 'To' is not a mobile number
TWILIO_RATE_LIMITED = frozenset({20429, 14107})  # API concurrency / rate limit

_DIGIT_RUN = re.compile(r"\+?\d[\d \-]{5,}\d")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_:\-]{40,}")


def mask(value: str | None) -> str:
    """Keep just enough of a phone number or push token to tell two apart in a log line."""
    if not value:
        return "-"
    if len(value) <= 6:
        return "***"
    return f"{value[:3]}***{value[-2:]}"


def scrub(text: str) -> str:
    """Mask phone numbers and token-like strings inside an SDK error message."""
    text = _DIGIT_RUN.sub(lambda m: mask(m.group(0)), text)
    return _LONG_TOKEN.sub(lambda m: mask(m.group(0)), text)


def parse_retry_after(value: str | None, *, at: Any = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if at is None:
        return None
    return max(0.0, (when - at).total_seconds())


# --- transport ---------------------------------------------------------------------------------


def may_have_arrived(exc: BaseException) -> bool:
    """False only when the request surely never left: no connection was made (connect timeout, refused,
    name not resolved). A read timeout or a connection dropped later may follow a request the provider
    received and acted on."""
    import requests
    import urllib3.exceptions

    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError):
        seen: set[int] = set()
        todo: list[object] = [exc]
        while todo:  # requests wraps urllib3's MaxRetryError, whose ``reason`` is the cause
            err = todo.pop()
            if err is None or id(err) in seen:
                continue
            seen.add(id(err))
            if isinstance(err, urllib3.exceptions.NewConnectionError):
                return False
            if isinstance(err, BaseException):
                todo.extend([*err.args, getattr(err, "reason", None), err.__cause__, err.__context__])
    return True


def from_transport(exc: requests.RequestException, service: str) -> ProviderError:
    if may_have_arrived(exc):
        text = f"{service}: no answer ({type(exc).__name__}); the request may have arrived"
        return OutcomeUnknown(text, code="outcome_unknown")
    return RetryableError(f"{service} transport error: {type(exc).__name__}")


# --- FCM --------------------------------------------------------------------------------------


def from_fcm(exc: Exception) -> ProviderError:
    """Map a firebase-admin exception (from ``send`` or a ``send_each`` response)."""
    # SDKs are imported here, not at module level: the default outbox channel never loads them.
    import requests
    from firebase_admin import exceptions as fb_exceptions
    from firebase_admin import messaging

    retryable = (
        fb_exceptions.UnavailableError,  # 503 (after the SDK's own retries) and connection errors
        fb_exceptions.InternalError,  # 500
        fb_exceptions.DeadlineExceededError,  # timeouts
        fb_exceptions.UnknownError,
        fb_exceptions.AbortedError,
    )
    if isinstance(exc, ProviderError):
        return exc
    if not isinstance(exc, fb_exceptions.FirebaseError):
        if isinstance(exc, requests.RequestException):
            return from_transport(exc, "FCM")
        return PermanentError(f"FCM: {type(exc).__name__}: {scrub(str(exc))}")
    cause = getattr(exc, "cause", None)
    if exc.http_response is None and isinstance(cause, requests.RequestException):
        return from_transport(cause, "FCM")  # the SDK's DeadlineExceeded / Unavailable without an answer
    message = f"FCM {exc.code}: {scrub(str(exc))}"
    status = getattr(exc.http_response, "status_code", None)
    if isinstance(exc, messaging.UnregisteredError):
        # Only errorCode UNREGISTERED means the token is dead; a bare 404 NOT_FOUND is not that.
        return InvalidRecipient(message, kind=TOKEN_UNREGISTERED, code="UNREGISTERED")
    if isinstance(exc, messaging.SenderIdMismatchError):
        # The token belongs to another Firebase project. One stale token and a service account for
        # the wrong project look the same, and deactivating every token on a configuration mistake
        # would be unrecoverable: keep the token, fail this delivery, let operators see the code.
        return PermanentError(message, code="SENDER_ID_MISMATCH")
    if isinstance(exc, messaging.QuotaExceededError):
        headers = getattr(exc.http_response, "headers", None) or {}
        retry_after = parse_retry_after(headers.get("Retry-After"))
        return RetryableError(message, code="QUOTA_EXCEEDED", retry_after_s=retry_after)
    if isinstance(exc, messaging.ThirdPartyAuthError):
        return PermanentError(message, code="THIRD_PARTY_AUTH_ERROR")  # APNs key/certificate: ops
    if isinstance(exc, retryable) or (status is not None and status >= 500):
        return RetryableError(message, code=str(exc.code))
    if isinstance(exc, fb_exceptions.ResourceExhaustedError):
        return RetryableError(message, code=str(exc.code))
    # INVALID_ARGUMENT is usually the payload, not the token: never deactivate on it.
    return PermanentError(message, code=str(exc.code))


# --- Twilio -----------------------------------------------------------------------------------


def from_twilio(exc: Exception, *, sender: str | None) -> ProviderError:
    """Map a twilio exception. ``sender`` (Messaging Service SID or number) scopes an opt-out."""
    import requests
    from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException

    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, requests.RequestException):
        return from_transport(exc, "Twilio")
    if isinstance(exc, TwilioRestException):
        status, code, text = exc.status, exc.code, exc.msg
    elif isinstance(exc, TwilioServiceException):
        status, code, text = exc.status, exc.code, exc.detail or exc.title
    elif isinstance(exc, TwilioException):
        return RetryableError(f"Twilio: {scrub(str(exc))}")
    else:
        return PermanentError(f"Twilio: {type(exc).__name__}: {scrub(str(exc))}")
    code_s = str(code) if code is not None else str(status)
    message = f"Twilio {status}/{code_s}: {scrub(str(text or ''))}"
    if code == TWILIO_UNSUBSCRIBED:
        return InvalidRecipient(message, kind=UNSUBSCRIBED, code=code_s, sender=sender)
    if code in TWILIO_NUMBER_INVALID:
        return InvalidRecipient(message, kind=NUMBER_INVALID, code=code_s)
    if status == 429 or code in TWILIO_RATE_LIMITED:
        return RetryableError(message, code=code_s)
    if status is not None and status >= 500:
        return RetryableError(message, code=code_s)
    return PermanentError(message, code=code_s)
