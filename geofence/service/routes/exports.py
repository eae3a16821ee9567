"""Routes: CRM exports (streamed CSV / Segment NDJSON with an incremental cursor) and campaign stats.

``GET /v1/exports/{kind}`` streams the rows changed since ``since`` in constant memory; the cursor to
pass next time is in the ``X-Next-Cursor`` header (known before the body: the export is bounded by a
snapshot taken when it starts). Admin scope: exports carry personal data.
"""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import func, select
from sqlmodel import SQLModel

from campaigns.attribution import CampaignStats
from campaigns.export import KIND_NAMES, MEDIA_TYPES, CursorError, UnknownKind, count_rows, plan_export
from campaigns.export.pipeline import export_file_name, render_plan
from campaigns.export.stats_source import load_campaign_stats
from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep
from geofence.service.runtime import Runtime
from geofence.service.security import require_scope
from geofence.service.tables.campaigns import Delivery

router = APIRouter(tags=["exports"], dependencies=[Depends(require_scope("admin"))])

NEXT_CURSOR_HEADER = "X-Next-Cursor"


class ExportFormat(StrEnum):
    csv = "csv"
    ndjson = "ndjson"


def receipt_providers(runtime: Runtime) -> frozenset[str]:
    """Providers whose delivery receipts reach us: Twilio, whose sends always carry a status callback
    (the configured URL, or ``public_base_url`` + ``/v1/deliveries/twilio/status``)."""
    return frozenset({"twilio"}) if "twilio" in runtime.settings.channels else frozenset()


@router.get("/v1/exports", summary="List the export kinds and formats")
def list_exports() -> dict[str, list[str]]:
    return {"kinds": list(KIND_NAMES), "formats": [f.value for f in ExportFormat]}


@router.get(
    "/v1/exports/{kind}",
    summary="Stream an export (CSV or Segment NDJSON) of the rows changed since a cursor",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {}, "application/x-ndjson": {}},
            "headers": {NEXT_CURSOR_HEADER: {"description": "pass as ?since= next time"}},
        },
        400: {"description": "malformed or foreign cursor"},
        404: {"description": "unknown export kind"},
    },
)
def export(
    kind: str,
    runtime: RuntimeDep,
    format: Annotated[ExportFormat, Query(description="csv (HubSpot-ready) or ndjson (Segment)")] = (
        ExportFormat.csv
    ),
    since: Annotated[str | None, Query(max_length=1024, description="opaque cursor")] = None,
    settle_s: Annotated[float, Query(ge=0, le=3600, description="skip rows newer than this")] = 2.0,
) -> StreamingResponse:
    at = clock.now()
    try:
        plan = plan_export(runtime.engine, kind, since, at=at, settle_s=settle_s)
    except UnknownKind as exc:
        raise HTTPException(404, detail=str(exc)) from exc
    except CursorError as exc:
        raise HTTPException(400, detail=f"since: {exc}") from exc
    headers = {
        "Content-Disposition": f'attachment; filename="{export_file_name(kind, format.value, at)}"',
        "X-Export-Rows": str(count_rows(runtime.engine, plan)),
        "Cache-Control": "no-store",
    }
    if plan.next_cursor:
        headers[NEXT_CURSOR_HEADER] = plan.next_cursor
    return StreamingResponse(
        render_plan(runtime.engine, plan, format.value), media_type=MEDIA_TYPES[format.value], headers=headers
    )


@router.get(
    "/v1/campaigns/{campaign_id}/stats",
    summary="Attribution: eligible, sent, delivered, skipped by reason, visits, uplift vs holdout",
    response_model=CampaignStats,
)
def campaign_stats(
    campaign_id: str,
    runtime: RuntimeDep,
    session: SessionDep,
    window_hours: Annotated[float, Query(gt=0, le=24 * 90, description="visit window after exposure")] = 24,
) -> CampaignStats:
    campaigns = SQLModel.metadata.tables.get("campaigns")
    known = campaigns is not None and session.execute(
        select(func.count()).select_from(campaigns).where(campaigns.c.id == campaign_id)
    ).scalar_one()
    if not known and not session.execute(
        select(Delivery.id).where(Delivery.campaign_id == campaign_id).limit(1)
    ).first():
        raise HTTPException(404, detail=f"unknown campaign {campaign_id!r}")
    window = timedelta(hours=window_hours)
    receipts = receipt_providers(runtime)
    return load_campaign_stats(session, campaign_id, window=window, receipt_providers=receipts)
