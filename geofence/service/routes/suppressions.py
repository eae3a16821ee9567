"""Route: the SMS suppression list for operators (scope ``admin``): numbers that must never receive
marketing (a STOP, an erasure), shown masked, with the reason and since when. A STOP from a number we
do not know is suppressed too: this is where it shows before any campaign tries it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlmodel import col, select

from campaigns.phones import canonical, phone_hash
from geofence.service.deps import SessionDep, SettingsDep
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import Principal, require_scope
from geofence.service.tables._types import as_utc
from geofence.service.tables.customers import Suppression

router = APIRouter(tags=["customers"])


class SuppressionPublic(BaseModel):
    phone_masked: str | None  # None after an erasure (only the keyed hash is kept)
    channel: str
    reason: str  # "sms_keyword" (a STOP), "erased" (an erasure request)
    created_at: datetime


@router.get(
    "/v1/suppressions",
    summary="List suppressed numbers (newest first)",
    responses={401: {"description": "No or bad API key"}, 403: {"description": "Not an admin key"}},
)
def list_suppressions(
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
    _: Annotated[Principal, Depends(require_scope("admin"))],
    channel: Annotated[str, Query(pattern="^(sms)$")] = "sms",
    reason: Annotated[str | None, Query(max_length=32, pattern=r"^[a-z_]+$")] = None,
    phone: Annotated[str | None, Query(max_length=40, pattern=r"^\+?[0-9 .\-]{3,39}$",
                                       description="Is this number suppressed?")] = None,
) -> Paginated[SuppressionPublic]:
    query = select(Suppression).where(Suppression.channel == channel)
    if reason is not None:
        query = query.where(Suppression.reason == reason)
    if phone is not None:
        hashed = phone_hash(canonical(phone), settings.hash_key.get_secret_value())
        query = query.where(Suppression.phone_hash == hashed)
    query = query.order_by(col(Suppression.created_at).desc(), col(Suppression.phone_hash))
    rows = session.exec(query.offset(page.offset).limit(page.limit + 1)).all()
    return page.build(rows, lambda r: SuppressionPublic(
        phone_masked=r.phone_masked, channel=r.channel, reason=r.reason, created_at=as_utc(r.created_at)))
