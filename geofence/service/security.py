"""Who is calling: API keys with scopes, and device credentials.

Scopes: ``ingest`` (mobile apps: post locations, register devices, manage their own consent) and
``admin`` (marketers: zones, campaigns, customers, exports). A device credential, issued when a device
registers, binds a caller to one device id: such a caller may only post fixes and consents for itself.
Twilio endpoints do not use this: they verify Twilio's signature.

Owner: access control (issue 8). The interface (``Principal``, ``require_scope``) is what routes use.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.security import APIKeyHeader, HTTPBearer

from geofence.service import apikeys, clock
from geofence.service.rate_limits import DatabaseRates, RateStore

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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


def client_address(request: Request) -> str:
    """The caller's address as the ASGI server reports it (behind a proxy: run uvicorn with
    ``--proxy-headers --forwarded-allow-ips <proxy>`` so that this is the client's, not the proxy's)."""
    return request.client.host if request.client else "unknown"


def claimed_key_id(token: str | None) -> str | None:
    """The key id a token names, verified or not (``gfk_<id>_<secret>``), to count failures per key."""
    if not token or not token.startswith(apikeys.API_KEY_PREFIX):
        return None
    key_id, sep, _ = token[len(apikeys.API_KEY_PREFIX) : len(apikeys.API_KEY_PREFIX) + 33].partition("_")
    return key_id if sep and apikeys.is_key_id(key_id) else None


def _too_many(what: str, wait_s: float) -> HTTPException:
    return HTTPException(
        429, detail=f"rate limit exceeded for this {what}; retry later",
        headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
    )  # fmt: skip


def make_authenticator(
    settings: Settings, engine: Engine, rates: RateStore
) -> Callable[[Request, str], Principal]:
    """``authenticate(request, scope)``: verify the key (and device token), check scope and rates.

    Raises 401 (no/invalid credential), 403 (valid key without ``scope``) or 429 (rate limit, or too
    many failed checks from this address or for this key id). The principal is also left on
    ``request.state.principal`` for logging. ``rates`` holds the buckets (``rate_limits``: the
    database, shared by every process).
    """
    from geofence.service.db import session_scope

    limits = settings.limits
    blocked = BlockedAddresses()

    def authenticate(request: Request, scope: str) -> Principal:
        address = client_address(request)
        now_s = clock.now().timestamp()
        if (wait_s := blocked.wait_s(address, now_s)) > 0:
            raise _too_many("client address (failed API key checks)", wait_s)
        token = presented_api_key(request)
        device_token = request.headers.get("x-device-token")
        refusal: HTTPException | None = None
        with session_scope(engine) as session:  # reads only (and last_used_at once a minute)
            key = apikeys.verify_api_key(session, token, at=clock.now()) if token else None
            device_id = None
            if key is None:
                refusal = _unauthorized(
                    "missing API key (Authorization: Bearer <key> or X-API-Key)" if token is None
                    else "invalid or revoked API key"
                )  # fmt: skip
            elif scope not in key.scopes:
                raise HTTPException(403, detail=f"this API key lacks the {scope!r} scope")
            elif device_token is not None:
                device_id = apikeys.verify_device_credential(session, device_token)
                if device_id is None:
                    refusal = _unauthorized("invalid X-Device-Token")
        # The spends in a transaction of their own whose first statement writes: on SQLite, a read
        # transaction that later writes fails at once (SQLITE_BUSY_SNAPSHOT) when another process wrote
        # meanwhile, where a first write waits for the lock.
        with engine.begin() if isinstance(rates, DatabaseRates) else nullcontext() as connection:

            def spend(name: str, rate_per_s: float, burst: int) -> float:
                return rates.spend(connection, name, now_s=now_s, rate_per_s=rate_per_s, burst=burst)

            if refusal is not None:  # a failed check: counted per address and per key id
                refusal = _failed_check(refusal, spend, address, claimed_key_id(token), now_s)
            else:
                assert key is not None
                if (wait_s := spend(f"key:{key.id}", limits.key_rate_per_s, limits.key_burst)) > 0:
                    refusal = _too_many("API key", wait_s)
                elif device_id is not None and (
                    wait_s := spend(f"device:{device_id}", limits.device_rate_per_s, limits.device_burst)
                ) > 0:
                    refusal = _too_many("device", wait_s)
        if refusal is not None:  # raised after the commit: a refused request's spend counts too
            raise refusal
        assert key is not None
        principal = Principal(key_id=key.id, scopes=key.scopes, device_id=device_id)
        request.state.principal = principal
        return principal

    def _failed_check(
        refusal: HTTPException, spend: Callable[[str, float, int], float], address: str,
        key_id: str | None, now_s: float,
    ) -> HTTPException:
        """The answer to a failed check: its own (401), or 429 once the address's or key id's budget is
        spent. An address past its budget is then refused by this process without a database read."""
        rate, burst = limits.failed_auth_rate_per_s, limits.failed_auth_burst
        if (by_address := spend(f"authfail:addr:{address}", rate, burst)) > 0:
            blocked.block(address, now_s + by_address)
            return _too_many("client address (failed API key checks)", by_address)
        if key_id is not None and (by_key := spend(f"authfail:key:{key_id}", rate, burst)) > 0:
            return _too_many("API key id (failed checks)", by_key)
        return refusal

    return authenticate


class BlockedAddresses:
    """Addresses whose failed-check budget is spent, until when (this process's memory): they are
    answered 429 without a database read. The budget itself is shared (``rates``); this only spares
    the database a flood, and is bounded (oldest entries dropped)."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def wait_s(self, address: str, now_s: float) -> float:
        until = self._until.get(address)
        if until is None:
            return 0.0
        if until <= now_s:
            with self._lock:
                self._until.pop(address, None)
            return 0.0
        return until - now_s

    def block(self, address: str, until_s: float) -> None:
        with self._lock:
            if len(self._until) >= self._max_entries:
                self._until.pop(next(iter(self._until)))
            self._until[address] = until_s
