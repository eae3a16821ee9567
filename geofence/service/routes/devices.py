"""Routes for the mobile app: register a device, refresh its push token, give or withdraw consent,
choose a cadence. Scope ``ingest``; a device-bound caller may act only for its own device.

Consent given here is recorded with source ``app_screen`` and the wording/version the screen showed:
the app must send them, they are the proof of what the person was told.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import AwareDatetime, BaseModel, Field

from campaigns import customers as uc
from campaigns.consent import Purpose, Source
from geofence.service import apikeys, clock
from geofence.service.deps import SessionDep, SettingsDep
from geofence.service.metrics import CONSENT_CHANGES
from geofence.service.security import Principal, require_scope
from geofence.service.tables.customers import Device

router = APIRouter(tags=["devices"])

IngestPrincipal = Annotated[Principal, Depends(require_scope("ingest"))]
DeviceId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]


class DeviceRegister(BaseModel):
    device_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    platform: Literal["ios", "android"]
    push_token: str | None = Field(default=None, max_length=4096)
    app_version: str | None = Field(default=None, max_length=64)
    customer_id: str | None = Field(
        default=None, max_length=64,
        description="Link the device to this customer: needs `link_token` (or an admin key).",
    )
    link_token: str | None = Field(
        default=None, max_length=512,
        description="From POST /v1/customers/{customer_id}/link-tokens, via the retailer's back end.",
    )
    locale: str | None = Field(default=None, max_length=20)
    tz: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=2)


class DeviceRegistered(BaseModel):
    device_id: str
    customer_id: str
    created: bool
    device_token: str | None = None  # the device credential, returned once (send it as X-Device-Token)


class TokenRefresh(BaseModel):
    push_token: str = Field(min_length=1, max_length=4096)


class ConsentChange(BaseModel):
    purpose: Purpose
    granted: bool
    wording: str = Field(min_length=1, max_length=2000, description="The exact text the screen showed.")
    wording_version: str = Field(min_length=1, max_length=64)
    occurred_at: AwareDatetime | None = Field(default=None, description="When the person tapped (UTC).")


class ConsentStatePublic(BaseModel):
    customer_id: str
    consents: dict[str, bool]
    cancelled_deliveries: int = 0


class Cadence(BaseModel):
    max_offers_per_day: int | None = Field(default=None, ge=0, le=1000)
    max_offers_per_week: int | None = Field(default=None, ge=0, le=1000)


def _own(principal: Principal, device_id: str) -> None:
    if not principal.may_act_for_device(device_id):
        raise HTTPException(403, "this credential may only act for its own device")


def _bound(principal: Principal, device_id: str) -> None:
    """Acting on a device's customer (its consents, cadence, push token) needs that device's credential:
    the app's ingest key alone would let anyone who extracts it act for every customer. Admin keys
    (server-to-server) may act for any device."""
    _own(principal, device_id)
    if principal.device_id is None and "admin" not in principal.scopes:
        raise HTTPException(403, "send this device's X-Device-Token (from registration) with the ingest key")


def _fail(exc: uc.CustomerError) -> HTTPException:
    if isinstance(exc, uc.NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, uc.Suppressed):
        return HTTPException(409, str(exc))
    return HTTPException(422, str(exc))


def _linked_customer(
    body: DeviceRegister, known: Device | None, principal: Principal, settings: SettingsDep, at: datetime
) -> str | None:
    """The customer the device may be linked to (None: keep its own, or a new one for a new device).

    An ingest key ships inside the app: on its own it proves nothing about whose phone this is, so it
    registers only unlinked devices. Linking needs a link token the retailer's back end obtained for
    that customer, or an admin key (server-to-server). A device-bound caller re-registering keeps the
    customer it already has.
    """
    if body.link_token is not None:
        vouched = apikeys.verify_link_token(body.link_token, key=settings.hash_key.get_secret_value(), at=at)
        if vouched is None:
            raise HTTPException(403, "invalid or expired link_token: ask the back end for a new one")
        if body.customer_id is not None and body.customer_id != vouched:
            raise HTTPException(403, "link_token was issued for another customer")
        return vouched
    if body.customer_id is None or "admin" in principal.scopes:
        return body.customer_id
    if known is not None and known.customer_id == body.customer_id and principal.device_id == known.id:
        return body.customer_id  # the device itself, naming the customer it already has
    raise HTTPException(
        403,
        "linking a device to a customer needs a link_token (POST /v1/customers/{customer_id}/link-tokens, "
        "from the retailer's back end) or an admin key",
    )


@router.post("/v1/devices", status_code=200)
def register_device(
    body: DeviceRegister, session: SessionDep, settings: SettingsDep, principal: IngestPrincipal
) -> DeviceRegistered:
    """Register (or re-register) the app on a phone; creates its customer when none is given."""
    _own(principal, body.device_id)
    known = session.get(Device, body.device_id)
    if known is not None and known.credential_hash and principal.key_id is not None and (
        principal.device_id != body.device_id
    ):
        # Otherwise anyone holding the app's shared ingest key could take over a device (and its consent)
        # by re-registering its id and receiving a fresh credential.
        raise HTTPException(409, "this device is already registered: call with its X-Device-Token")
    at = clock.now()
    customer_id = _linked_customer(body, known, principal, settings, at)
    try:
        device, created = uc.register_device(
            session, device_id=body.device_id, platform=body.platform, at=at, customer_id=customer_id,
            push_token=body.push_token, app_version=body.app_version,
        )  # fmt: skip
        customer_id = str(device.customer_id)
        if created and any(v is not None for v in (body.locale, body.tz, body.country)):
            uc.upsert_customer(
                session, uc.CustomerInput(locale=body.locale, tz=body.tz, country=body.country), at=at,
                hash_key=settings.hash_key.get_secret_value(), customer_id=customer_id,
            )  # fmt: skip
        # A device-bound caller keeps its credential; an app key registering gets a (new) one.
        token = apikeys.issue_device_credential(session, device.id) if principal.device_id is None else None
        session.commit()
    except uc.CustomerError as exc:
        session.rollback()
        raise _fail(exc) from exc
    return DeviceRegistered(
        device_id=device.id, customer_id=customer_id, created=created, device_token=token
    )


@router.put("/v1/devices/{device_id}/push-token")
def refresh_token(
    device_id: DeviceId, body: TokenRefresh, session: SessionDep, principal: IngestPrincipal
) -> dict[str, str]:
    _bound(principal, device_id)
    try:
        uc.refresh_push_token(session, device_id, body.push_token, at=clock.now())
    except uc.CustomerError as exc:
        raise _fail(exc) from exc
    session.commit()
    return {"device_id": device_id, "status": "updated"}


def _state(session: SessionDep, customer_id: str, at: datetime, cancelled: int = 0) -> ConsentStatePublic:
    state = uc.current_consent(session, customer_id, at=at)
    return ConsentStatePublic(
        customer_id=customer_id,
        consents={p.value: v for p, v in state.items()},
        cancelled_deliveries=cancelled,
    )


@router.get("/v1/devices/{device_id}/consents")
def get_consents(device_id: DeviceId, session: SessionDep, principal: IngestPrincipal) -> ConsentStatePublic:
    _bound(principal, device_id)
    try:
        customer = uc.customer_of_device(session, device_id)
    except uc.CustomerError as exc:
        raise _fail(exc) from exc
    return _state(session, customer.id, clock.now())


@router.post("/v1/devices/{device_id}/consents")
def change_consent(
    device_id: DeviceId, body: ConsentChange, session: SessionDep, principal: IngestPrincipal
) -> ConsentStatePublic:
    """Give or withdraw one purpose; a withdrawal cancels the matching queued messages at once."""
    _bound(principal, device_id)
    at = clock.now()
    try:
        customer = uc.customer_of_device(session, device_id)
        _, cancelled = uc.record_consent(
            session, customer_id=customer.id, purpose=body.purpose, granted=body.granted,
            source=Source.APP_SCREEN, at=at, occurred_at=body.occurred_at, wording=body.wording,
            wording_version=body.wording_version, recorded_by=f"device:{device_id}",
            evidence={"device_id": device_id, "api_key_id": principal.key_id},
        )  # fmt: skip
        result = _state(session, customer.id, at, cancelled)
        session.commit()
    except uc.CustomerError as exc:
        session.rollback()
        raise _fail(exc) from exc
    CONSENT_CHANGES.labels(purpose=body.purpose.value, granted=str(body.granted).lower(),
                           source=Source.APP_SCREEN.value).inc()  # fmt: skip
    return result


@router.put("/v1/devices/{device_id}/cadence")
def set_cadence(
    device_id: DeviceId, body: Cadence, session: SessionDep, principal: IngestPrincipal
) -> Cadence:
    """The customer's own limit on offers (None = no personal limit beyond the campaign caps)."""
    _bound(principal, device_id)
    try:
        customer = uc.customer_of_device(session, device_id)
        uc.set_cadence(session, customer.id, per_day=body.max_offers_per_day,
                       per_week=body.max_offers_per_week, at=clock.now())  # fmt: skip
        session.commit()
    except uc.CustomerError as exc:
        session.rollback()
        raise _fail(exc) from exc
    return body
