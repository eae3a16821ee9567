"""The Twilio SDK's side of inbound webhooks: signature checks and the TwiML reply.

The service's routes call these, so that only ``campaigns.providers`` imports the SDK.
"""

from __future__ import annotations

from collections.abc import Mapping

from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse


def signature_valid(auth_token: str, url: str, params: Mapping[str, str], signature: str) -> bool:
    """``X-Twilio-Signature`` check of a form POST to ``url`` (the public URL Twilio signed)."""
    return bool(RequestValidator(auth_token).validate(url, dict(params), signature))


def messaging_twiml(reply: str | None) -> str:
    """The TwiML answer to an inbound SMS: one ``<Message>`` with ``reply``, or none."""
    twiml = MessagingResponse()
    if reply:
        twiml.message(reply)
    return str(twiml)
