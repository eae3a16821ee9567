"""Who is calling: API keys with scopes, and device credentials.

Scopes: ``ingest`` (mobile apps: post locations, register devices, manage their own consent) and
``admin`` (marketers: zones, campaigns, customers, exports). A device credential, issued when a device
registers, binds a caller to one device id: such a caller may only post fixes and consents for itself.
Twilio endpoints do not use this: they verify Twilio's signature.

Owner: access control (issue 8). The interface (``Principal``, ``require_scope``) is what routes use.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPBearer

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from geofence.service.limits_http import RateLimiter
    from geofence.service.runtime import Runtime
    from geofence.service.settings import Settings


@dataclass(frozen=True)
class Principal:
    key_id: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    device_id: str | None = None  # set when the caller authenticated as one device

    def may_act_for_device(self, device_id: str) -> bool:
        """A device-bound caller may act only for its own device; an unbound ingest/admin key for any."""
        return self.device_id is None or self.device_id == device_id


OPEN_PRINCIPAL = Principal(key_id=None, scopes=frozenset({"ingest", "admin"}))

# Declared only so OpenAPI shows the schemes (and /docs an "Authorize" button); the values are read
# from the request by ``authenticate`` itself.
_BEARER_DOC = HTTPBearer(
    auto_error=False, scheme_name="apiKeyBearer", description="Authorization: Bearer <API key>"
)
_API_KEY_DOC = APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader")
_DEVICE_DOC = APIKeyHeader(
    name="X-Device-Token", auto_error=False, scheme_name="deviceToken",
    description="Device credential from registration; binds the caller to that device (with an ingest key).",
)


def require_scope(scope: str) -> Callable[..., Awaitable[Principal]]:
    """Dependency factory: the request must carry a credential with ``scope``."""

    async def dependency(
        request: Request,
        _bearer: object = Depends(_BEARER_DOC),
        _api_key: object = Depends(_API_KEY_DOC),
        _device: object = Depends(_DEVICE_DOC),
    ) -> Principal:
        runtime: Runtime = request.app.state.runtime
        if not needs_authentication(runtime):
            return OPEN_PRINCIPAL
        # the key check reads the database: off the event loop, as FastAPI ran the whole dependency
        # before it was ``async`` (which cost a thread hop even when auth is off)
        return await run_in_threadpool(principal_for, runtime, request, scope)

    dependency.required_scope = scope  # type: ignore[attr-defined]  # lets tests find each route's scope
    return dependency


def needs_authentication(runtime: Runtime) -> bool:
    return runtime.settings.auth_required


def principal_for(runtime: Runtime, request: Request, scope: str) -> Principal:
    """The caller, as ``require_scope(scope)`` establishes it (blocking: it may read the database).
    For handlers that run outside FastAPI's dependencies (``routes.locations.serve_locations``)."""
    if not needs_authentication(runtime):
        return OPEN_PRINCIPAL
    return runtime.authenticate(request, scope)


# --- the scheme (``runtime.authenticate``, built by ``bootstrap``) -------------------

_BEARER = "bearer "


def presented_api_key(request: Request) -> str | None:
    """The API key from ``Authorization: Bearer`` or ``X-API-Key`` (the former wins)."""
    authorization = request.headers.get("authorization")
    if authorization:
        if authorization[: len(_BEARER)].lower() != _BEARER:
            return ""  # some other scheme: present but unusable
        return authorization[len(_BEARER) :].strip()
    return request.headers.get("x-api-key")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": 'Bearer realm="geofence"'})


def make_authenticator(
    settings: Settings, engine: Engine, limiter: RateLimiter
) -> Callable[[Request, str], Principal]:
    """``authenticate(request, scope)``: verify the key (and device token), check scope and rates.

    Raises 401 (no/invalid credential), 403 (valid key without ``scope``) or 429 (rate limit). The
    principal is also left on ``request.state.principal`` for logging.
    """
    from geofence.service import apikeys, clock
    from geofence.service.db import session_scope

    limits = settings.limits

    def authenticate(request: Request, scope: str) -> Principal:
        token = presented_api_key(request)
        if token is None:
            raise _unauthorized("missing API key (Authorization: Bearer <key> or X-API-Key)")
        device_token = request.headers.get("x-device-token")
        with session_scope(engine) as session:
            key = apikeys.verify_api_key(session, token, at=clock.now()) if token else None
            if key is None:
                raise _unauthorized("invalid or revoked API key")
            if scope not in key.scopes:
                raise HTTPException(403, detail=f"this API key lacks the {scope!r} scope")
            device_id = None
            if device_token is not None:
                device_id = apikeys.verify_device_credential(session, device_token)
                if device_id is None:
                    raise _unauthorized("invalid X-Device-Token")
        limiter.check(
            f"key:{key.id}", rate_per_s=limits.key_rate_per_s, burst=limits.key_burst, what="API key"
        )
        if device_id is not None:
            limiter.check(
                f"device:{device_id}", rate_per_s=limits.device_rate_per_s, burst=limits.device_burst,
                what="device",
            )
        principal = Principal(key_id=key.id, scopes=key.scopes, device_id=device_id)
        request.state.principal = principal
        return principal

    return authenticate
