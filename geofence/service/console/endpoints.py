"""The console's JSON and event-stream routes: the API forwarded with the session's key, the SMS length
and legal grid aids, a dry run over an uploaded trace, and the live stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from geofence.policy import FencePolicy
from geofence.service import clock
from geofence.service.console.api_proxy import allowed, call_api
from geofence.service.console.campaign_aids import sms_preview
from geofence.service.console.context import PREFIX, api_session, checked_session, console_of
from geofence.service.console.i18n import language_of
from geofence.service.console.live_feed import LiveFeed
from geofence.service.console.session import ConsoleSession
from geofence.service.console.trace_events import as_dry_run_events, trace_events, zones_of_trigger
from zones.io import read_zones_geojson

router = APIRouter(prefix=PREFIX, include_in_schema=False)
ReadSession = Annotated[ConsoleSession, Depends(api_session)]
WriteSession = Annotated[ConsoleSession, Depends(checked_session)]
MAX_BODY = 5_000_000
POLL_S = 1.0
HEARTBEAT_S = 15.0


async def _forward(request: Request, session: ConsoleSession, path: str) -> Response:
    if not allowed(request.method, path):
        raise HTTPException(404, detail="not available in the console")
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, detail=f"body larger than {MAX_BODY} bytes")
    status, payload, headers = await call_api(
        console_of(request).api, request.method, path, api_key=session.api_key,
        query=request.url.query, body=body,
        content_type=request.headers.get("content-type", "application/json"), lang=language_of(request),
    )
    if payload is None:
        return Response(status_code=status)
    return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})


@router.get("/api/v1/{path:path}")
async def api_read(request: Request, session: ReadSession, path: str) -> Response:
    return await _forward(request, session, path)


@router.api_route("/api/v1/{path:path}", methods=["POST", "PUT", "DELETE"])
async def api_write(request: Request, session: WriteSession, path: str) -> Response:
    return await _forward(request, session, path)


@router.get("/zones.geojson")
async def zone_map(request: Request, _s: ReadSession) -> Response:
    """Every zone for the maps (what ``GET /v1/zones/export`` gives, kept while no zone changes)."""
    body = await run_in_threadpool(console_of(request).zone_map.geojson)
    return Response(body, media_type="application/geo+json", headers={"Cache-Control": "no-store"})


class SmsPreviewIn(BaseModel):
    body: str = Field(max_length=2000)
    locale: str = Field("fr", max_length=16)
    advertiser: str | None = Field(None, max_length=200)
    sender: str | None = Field(None, max_length=32)


@router.post("/sms-preview")
def sms_length(body: SmsPreviewIn, _s: WriteSession) -> dict[str, Any]:
    return sms_preview(body.body, locale=body.locale, advertiser=body.advertiser, sender=body.sender)


@router.post("/campaigns/{campaign_id}/trace-dry-run")
async def trace_dry_run(request: Request, session: WriteSession, campaign_id: str) -> Response:
    """Dry-run a campaign over the zone events an uploaded trace (GPX or CSV) gives in its zones."""
    async with request.form() as form:
        upload = form.get("trace")
        if upload is None or isinstance(upload, str):
            raise HTTPException(422, detail="attach a GPX or CSV trace as 'trace'")
        raw = await upload.read(MAX_BODY + 1)
        filename = upload.filename or "trace.gpx"
        device_id = str(form.get("device_id") or "trace")[:128]
    if len(raw) > MAX_BODY:
        raise HTTPException(413, detail=f"trace larger than {MAX_BODY} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(422, detail=f"the trace is not UTF-8 (byte {exc.start})") from None
    ctx = console_of(request)
    cid = quote(campaign_id, safe="")
    status, campaign, _ = await call_api(ctx.api, "GET", f"campaigns/{cid}", api_key=session.api_key)
    if status != 200:
        return JSONResponse(campaign, status_code=status)
    exported = json.loads(await run_in_threadpool(ctx.zone_map.geojson))  # = GET /v1/zones/export
    zones, _errors = read_zones_geojson(exported)
    chosen = zones_of_trigger(zones, campaign.get("definition", campaign).get("trigger", {}))
    events, problems = await run_in_threadpool(
        trace_events, text, name=filename, zones=chosen, base=FencePolicy(), device_id=device_id
    )
    payload = {"events": as_dry_run_events(events)[:10_000], "rows": 500}
    status, report, _ = await call_api(ctx.api, "POST", f"campaigns/{cid}/dry-run", api_key=session.api_key,
                                       body=json.dumps(payload).encode())
    if status != 200:
        return JSONResponse(report, status_code=status)
    return JSONResponse({**report, "trace_events": len(events), "trace_problems": problems[:50]})


async def _stream(request: Request, feed: LiveFeed) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    idle_s = 0.0
    while not await request.is_disconnected():
        items = await run_in_threadpool(feed.poll)
        for item in items:
            yield f"event: {item['type']}\ndata: {json.dumps(item)}\n\n".encode()
        idle_s = 0.0 if items else idle_s + POLL_S
        if idle_s >= HEARTBEAT_S:
            idle_s = 0.0
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_S)


@router.get("/live/stream")
def live_stream(request: Request, _s: ReadSession) -> StreamingResponse:
    """Server-sent events: ``zone_event``, ``decision`` and ``arrival``, from the moment the page connects."""
    feed = LiveFeed(console_of(request).engine, start_at=clock.now())
    return StreamingResponse(
        _stream(request, feed), media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
