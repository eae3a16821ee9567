"""Routes: ``POST /v1/locations`` — the location feed (one fix or a batch of up to ``ingest.max_batch``).

The hot path decodes the raw body with msgspec (about 3x pydantic's rate on 100-fix batches): a batch
that decodes cleanly goes straight through; otherwise each fix is converted on its own so one bad fix is
rejected with its reason and never takes the good ones down. The pydantic models below are used only to
document the request and the response in OpenAPI, and describe exactly what the decoder accepts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.ingest import OK, FixResult
from geofence.service import clock
from geofence.service.deps import RuntimeDep
from geofence.service.ingest_answers import (
    AlreadyAnswered,
    AnsweredRequest,
    answer_key,
    event_dict,
    find_answer,
)
from geofence.service.limits_http import read_whole_body, send_error
from geofence.service.location_feed import LocationFeed
from geofence.service.runtime import Runtime
from geofence.service.security import Principal, principal_for, require_scope

router = APIRouter(tags=["locations"])


# -- wire format (msgspec: the decoder builds ``LocationFix`` structs directly) -----------------------
class BatchIn(msgspec.Struct):
    fixes: list[LocationFix]


_batch_decoder = msgspec.json.Decoder(BatchIn)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


# -- documentation (pydantic: OpenAPI only) --------------------------------------------------------
class LocationFixDoc(BaseModel):
    """One fix. ``recorded_at`` must carry a timezone offset (RFC 3339); naive times are rejected."""

    device_id: str = Field(min_length=1, max_length=128)
    lat: float = Field(ge=-90, le=90)
    lng: float = Field(ge=-180, le=180)
    accuracy_m: float = Field(gt=0, le=5000, description="horizontal accuracy radius, metres")
    recorded_at: datetime = Field(description="fix time, timezone-aware")
    speed_mps: float | None = Field(None, ge=0)
    heading_deg: float | None = Field(None, ge=0, le=360)
    client_fix_id: str | None = Field(None, max_length=128, description="idempotency key per device")


class FixResultOut(BaseModel):
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None


class ZoneEventOut(BaseModel):
    id: str
    zone_id: str
    device_id: str
    kind: Literal["enter", "dwell", "exit"]
    at: datetime
    visit_id: str
    reason: str
    lat: float | None = None
    lng: float | None = None


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[FixResultOut] = Field(description="one per fix, in request order")
    events: list[ZoneEventOut]


def _request_schema(max_batch: int = 1000) -> dict[str, Any]:
    fix = LocationFixDoc.model_json_schema()
    batch = {
        "title": "LocationBatch",
        "type": "object",
        "required": ["fixes"],
        "properties": {"fixes": {"type": "array", "items": fix, "minItems": 0, "maxItems": max_batch}},
    }
    return {"required": True, "content": {"application/json": {"schema": {"oneOf": [fix, batch]}}}}


# -- decoding ------------------------------------------------------------------------------------
_PLACEHOLDER = LocationFix("", 0.0, 0.0, 1.0, datetime(2000, 1, 1, tzinfo=UTC))


def _error_reason(exc: Exception) -> str:
    return f"invalid: {exc}"[:200]


def _text_reason(fix: LocationFix) -> str | None:
    """Why a decoded fix's text cannot be stored (msgspec already refuses lone surrogates), or None."""
    for name, text in (("device_id", fix.device_id), ("client_fix_id", fix.client_fix_id)):
        if text is not None and "\x00" in text:
            return f"invalid: {name} contains a NUL character, which no database can store"
    return None


def _refuse_unstorable(fixes: list[LocationFix], bad: dict[int, str]) -> None:
    """Reject (in place) the fixes whose text cannot be stored: the others of the batch go on."""
    for i, fix in enumerate(fixes):
        if i not in bad and (reason := _text_reason(fix)) is not None:
            fixes[i] = _PLACEHOLDER
            bad[i] = reason


def decode_fixes(body: bytes, max_batch: int) -> tuple[list[LocationFix], dict[int, str]]:
    """Body -> fixes, plus the positions that could not be decoded with their reason.

    Raises ``HTTPException`` 422 when the body is not JSON or not a fix / batch, 413 when the batch is
    larger than ``max_batch``.
    """
    try:
        batch = _batch_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError):
        pass
    else:
        if len(batch.fixes) > max_batch:
            raise HTTPException(413, detail=f"batch of {len(batch.fixes)} fixes; the limit is {max_batch}")
        fast_bad: dict[int, str] = {}
        if b"\\u0000" in body:  # the only way JSON writes a NUL (a raw one is malformed)
            _refuse_unstorable(batch.fixes, fast_bad)
        return batch.fixes, fast_bad
    try:
        doc = _any_decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise HTTPException(422, detail=f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise HTTPException(400, detail="the JSON body is nested too deeply") from None
    if isinstance(doc, dict) and "fixes" in doc:
        items = doc["fixes"]
        if not isinstance(items, list):
            raise HTTPException(422, detail="`fixes` must be an array of fixes")
    elif isinstance(doc, dict):
        items = [doc]
    elif isinstance(doc, list):
        items = doc
    else:
        raise HTTPException(422, detail="expected a fix object or {\"fixes\": [...]}")
    if len(items) > max_batch:
        raise HTTPException(413, detail=f"batch of {len(items)} fixes; the limit is {max_batch}")
    fixes: list[LocationFix] = []
    bad: dict[int, str] = {}
    for i, item in enumerate(items):
        try:
            fixes.append(msgspec.convert(item, LocationFix))
        except (msgspec.ValidationError, TypeError, ValueError, OverflowError) as exc:
            fixes.append(_PLACEHOLDER)
            bad[i] = _error_reason(exc)
    _refuse_unstorable(fixes, bad)
    if len(items) == 1 and bad and isinstance(doc, dict) and "fixes" not in doc:
        raise HTTPException(422, detail=bad[0])  # a single malformed fix: the request itself is bad
    return fixes, bad


@router.post(
    "/v1/locations",
    response_model=IngestOut,
    summary="Post one location fix or a batch",
    openapi_extra={"requestBody": _request_schema()},
    responses={413: {"description": "body or batch too large"}, 422: {"description": "malformed body"},
               503: {"description": "GEOFENCE_BUS set and the fix stream did not acknowledge: retry"}},
)
async def post_locations(
    request: Request, runtime: RuntimeDep, principal: Annotated[Principal, Depends(require_scope("ingest"))]
) -> Response:
    """Documents the route and serves it when the lean handler does not (``serve_locations``)."""
    body = await read_body(request, runtime.settings.ingest.max_body_bytes)
    payload = await run_in_threadpool(ingest_body, runtime, body, principal)
    return Response(payload, media_type="application/json")


async def serve_locations(app: Any, scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/locations`` as a plain ASGI handler, ahead of FastAPI's middleware, routing and
    dependency resolution (``app.GeofenceApp``), which cost about as much CPU per 100-fix request as
    the ingest behind it. Same behaviour as ``post_locations`` (the tests go through both): the body
    limits, ``require_scope("ingest")``'s authentication, decoding, ingest. The blocking part runs in
    the feed's thread (``location_feed``), which coalesces requests waiting together."""
    runtime: Runtime = app.state.runtime
    request = Request(scope, receive)
    ingest = runtime.settings.ingest
    try:
        body = await read_whole_body(scope, receive, ingest.max_body_bytes, ingest.body_timeout_s)
        if body is None:  # the client went away
            return
        payload = await FEED.submit(runtime, request, body)
    except HTTPException as exc:
        await send_error(send, exc.status_code, exc.detail, exc.headers)
        return
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refused with 413 past ``max_bytes`` (declared, or counted while it streams)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise HTTPException(400, detail="invalid Content-Length header")
        if int(declared) > max_bytes:
            raise HTTPException(413, detail=f"body larger than {max_bytes} bytes")
        return await request.body()
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, detail=f"body larger than {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


def prepare(runtime: Runtime, request: Request, body: bytes) -> tuple[list[LocationFix], dict[int, str], str]:
    """Authenticate (``ingest`` scope), decode, and refuse the fixes of devices the caller may not post for
    (blocking: the key check reads the database); the request's answer key (``ingest_answers``; "" where
    answers are not kept)."""
    principal = principal_for(runtime, request, "ingest")
    fixes, refused = _decode_for(runtime, body, principal)
    if not runtime.geofence.keeps_answers:  # nothing is stored under the key: "" (no digest of the body)
        return fixes, refused, ""
    return fixes, refused, answer_key(principal.key_id, principal.device_id, body)


def _decode_for(
    runtime: Runtime, body: bytes, principal: Principal
) -> tuple[list[LocationFix], dict[int, str]]:
    fixes, refused = decode_fixes(body, runtime.settings.ingest.max_batch)
    if principal.device_id is not None:
        for i, fix in enumerate(fixes):
            if i not in refused and not principal.may_act_for_device(fix.device_id):
                refused[i] = "device_not_allowed"
    return fixes, refused


def ingest_body(runtime: Runtime, body: bytes, principal: Principal) -> bytes:
    """Decode, ingest and encode the answer, in the calling thread (``post_locations``)."""
    fixes, refused = _decode_for(runtime, body, principal)
    key = answer_key(principal.key_id, principal.device_id, body)
    devices = frozenset(f.device_id for i, f in enumerate(fixes) if i not in refused)
    for attempt in range(2):
        try:
            outcome = runtime.geofence.ingest(fixes, at=clock.now(), refused=refused,
                                              answered=[AnsweredRequest(key, 0, len(fixes), devices)])
        except AlreadyAnswered:
            if (payload := replay(runtime, key)) is not None or attempt:
                if payload is None:
                    raise
                return payload
            continue  # purged in between: an answer of its own, then
        return render(outcome.results, outcome.events)
    raise AssertionError("unreachable")


def replay(runtime: Runtime, key: str) -> bytes | None:
    """The stored answer of a request already answered (``ingest_answers``), or None."""
    with runtime.engine.connect() as conn:
        found = find_answer(conn, key)
    return None if found is None else render_dicts(*found)


def render(results: Sequence[FixResult], events: Sequence[ZoneEvent]) -> bytes:
    """The answer (``IngestOut``) to a request's fixes: a result each, and the events of its devices."""
    return render_dicts(results, [event_dict(e) for e in events])


def render_dicts(results: Sequence[FixResult], events: Sequence[dict[str, Any]]) -> bytes:
    """The answer's bytes. The usual one, every fix accepted (always so on the bus path but for
    rejections), is put together from encoded pieces instead of a dict per fix: ~10x cheaper for 100
    fixes, the same bytes as ``render_document`` (``tests/service/test_locations_render.py``)."""
    if type(results) is list and results.count(OK) == len(results):
        n = len(results)
        accepted = _ACCEPTED.get(n) or _ACCEPTED.setdefault(n, b",".join([_ACCEPTED_ONE] * n))
        return b'{"accepted":%d,"duplicates":0,"rejected":0,"results":[%b],"events":%b}' % (
            n, accepted, _encoder.encode(events))
    return render_document(results, events)


def render_document(results: Sequence[FixResult], events: Sequence[dict[str, Any]]) -> bytes:
    """The answer as one encoded document (the reference of ``render_dicts``)."""
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    for r in results:
        counts[r.status] += 1
    return _encoder.encode({
        "accepted": counts["accepted"], "duplicates": counts["duplicate"], "rejected": counts["rejected"],
        "results": [{"status": r.status, "reason": r.reason} for r in results], "events": events,
    })


_ACCEPTED_ONE = _encoder.encode({"status": OK.status, "reason": OK.reason})
_ACCEPTED: dict[int, bytes] = {}  # n accepted results, encoded and joined (n <= ingest.max_batch)


FEED = LocationFeed(prepare, render, replay)
