"""Route for the retailer's back end (scope ``admin``): a device link token for one customer.

The app's ingest key ships inside the app, so it cannot prove who a phone belongs to. The retailer's back
end, which has logged the person in, asks for a link token for that customer and hands it to the app;
the app registers with it (``POST /v1/devices`` with ``customer_id`` and ``link_token``). See
docs/security.md, "Linking a device to a customer".
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from campaigns import customers as uc
from geofence.service import apikeys, clock
from geofence.service.deps import SessionDep, SettingsDep
from geofence.service.security import Principal, require_scope

router = APIRouter(tags=["customers"])

AdminPrincipal = Annotated[Principal, Depends(require_scope("admin"))]
CustomerId = Annotated[str, Path(min_length=1, max_length=64)]


class LinkTokenPublic(BaseModel):
    customer_id: str
    link_token: str
    expires_at: datetime


@router.post("/v1/customers/{customer_id}/link-tokens", status_code=201)
def issue_link_token(
    customer_id: CustomerId, session: SessionDep, settings: SettingsDep, _: AdminPrincipal
) -> LinkTokenPublic:
    """A short-lived token that lets one app installation link its device to this customer."""
    try:
        uc.get_customer(session, customer_id)
    except uc.NotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except uc.CustomerError as exc:
        raise HTTPException(422, str(exc)) from exc
    token, expires_at = apikeys.issue_link_token(
        customer_id, key=settings.hash_key.get_secret_value(), at=clock.now(),
        ttl=timedelta(seconds=settings.link_token_ttl_s),
    )  # fmt: skip
    return LinkTokenPublic(customer_id=customer_id, link_token=token, expires_at=expires_at)
