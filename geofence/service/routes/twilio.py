"""Routes: Twilio inbound SMS webhook (STOP / START / HELP), answered once in TwiML.

No API key here: the request must carry a valid ``X-Twilio-Signature`` for the public URL
(``settings.public_base_url`` + path), checked with the twilio SDK's ``RequestValidator`` before the
body is read for anything else. A missing or forged signature is a 403 and nothing is recorded.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from starlette.concurrency import run_in_threadpool

from campaigns.inbound_sms import InboundOutcome, InboundSms, MalformedInbound, handle_inbound_sms
from campaigns.providers.twilio_webhooks import messaging_twiml
from geofence.service import clock
from geofence.service.db import session_scope
from geofence.service.deps import RuntimeDep
from geofence.service.metrics import INBOUND_SMS
from geofence.service.runtime import Runtime
from geofence.service.twilio_auth import verified_form

router = APIRouter(tags=["twilio"])

INBOUND_PATH = "/v1/twilio/sms/inbound"


def _handle(runtime: Runtime, sms: InboundSms) -> InboundOutcome:
    with session_scope(runtime.engine) as session:
        return handle_inbound_sms(
            session,
            sms,
            at=clock.now(),
            hash_key=runtime.settings.hash_key.get_secret_value(),
            config=runtime.sms_keywords,
        )


@router.post(
    INBOUND_PATH,
    response_class=Response,
    responses={200: {"content": {"application/xml": {}}, "description": "TwiML reply"},
               403: {"description": "missing or invalid X-Twilio-Signature"}},
)  # fmt: skip
async def inbound_sms(request: Request, runtime: RuntimeDep) -> Response:
    """Twilio posts every SMS sent to our numbers here (form-encoded)."""
    form = await verified_form(request, runtime.settings)
    try:
        sms = InboundSms.from_form(form)
    except MalformedInbound as exc:
        raise HTTPException(400, str(exc)) from exc
    outcome = await run_in_threadpool(_handle, runtime, sms)
    INBOUND_SMS.labels(intent="duplicate" if outcome.duplicate else outcome.intent.value).inc()
    return Response(content=messaging_twiml(outcome.reply), media_type="application/xml")
