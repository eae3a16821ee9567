"""Wiring for operations: logging, the authentication scheme, rate limiter and HTTP edge limits."""

from __future__ import annotations

from fastapi import FastAPI

from geofence.service import clock
from geofence.service.db import session_scope
from geofence.service.limits_http import BodyGuard
from geofence.service.logging import configure_logging
from geofence.service.rate_limits import DatabaseRates, MemoryRates, RateStore, purge_full_buckets
from geofence.service.runtime import Job, Runtime
from geofence.service.security import make_authenticator

PURGE_RATE_LIMITS_EVERY_S = 600.0


def setup(runtime: Runtime) -> None:
    """Register ``authenticate`` (used by ``security.require_scope``) and the body guard middleware."""
    configure_logging(runtime.settings)
    rates: RateStore = DatabaseRates() if runtime.settings.limits.store == "database" else MemoryRates()
    runtime.services["authenticate"] = make_authenticator(runtime, rates)
    runtime.add_job(Job("ops.purge_rate_limits", purge_rate_limits, PURGE_RATE_LIMITS_EVERY_S, role="worker"))
    ingest = runtime.settings.ingest

    def add_body_limit(app: FastAPI) -> None:
        app.add_middleware(BodyGuard, max_bytes=ingest.max_body_bytes, timeout_s=ingest.body_timeout_s)

    runtime.services.setdefault("app_hooks", []).append(add_body_limit)


def purge_rate_limits(runtime: Runtime) -> int:
    """Drop the rows of refilled rate buckets (they hold nothing); keeps the table to the active ones."""
    with session_scope(runtime.engine) as session:
        return purge_full_buckets(session.connection(), now_s=clock.now().timestamp())
