"""Wiring for operations: logging, the authentication scheme, rate limiter and HTTP edge limits."""

from __future__ import annotations

from fastapi import FastAPI

from geofence.service.limits_http import BodySizeLimit, RateLimiter
from geofence.service.logging import configure_logging
from geofence.service.runtime import Runtime
from geofence.service.security import make_authenticator


def setup(runtime: Runtime) -> None:
    """Register ``authenticate`` (used by ``security.require_scope``) and the body-size middleware."""
    configure_logging(runtime.settings)
    runtime.services.setdefault("rate_limiter", RateLimiter())
    runtime.services["authenticate"] = make_authenticator(runtime)
    max_body_bytes = runtime.settings.ingest.max_body_bytes

    def add_body_limit(app: FastAPI) -> None:
        app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    runtime.services.setdefault("app_hooks", []).append(add_body_limit)
