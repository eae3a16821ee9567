"""Verify that a webhook really comes from Twilio (``X-Twilio-Signature``) using the SDK's validator
(``campaigns.providers.twilio_webhooks``).

The URL that Twilio signed is the *public* one (a proxy changes what the app sees), so it is rebuilt
from ``settings.public_base_url`` plus the request path and query.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from campaigns.providers.twilio_webhooks import signature_valid
from geofence.service.settings import Settings


def public_url(request: Request, settings: Settings) -> str:
    url = settings.public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


async def verified_form(request: Request, settings: Settings) -> dict[str, str]:
    """Return the posted form fields, or raise 403 when the signature is missing or forged."""
    token = settings.twilio.auth_token
    signature = request.headers.get("X-Twilio-Signature")
    if token is None:
        raise HTTPException(403, "Twilio webhooks are disabled: no auth token is configured")
    if not signature:
        raise HTTPException(403, "missing X-Twilio-Signature")
    form = await request.form()
    params = {k: str(v) for k, v in form.multi_items()}
    if not signature_valid(token.get_secret_value(), public_url(request, settings), params, signature):
        raise HTTPException(403, "invalid X-Twilio-Signature")
    return params
