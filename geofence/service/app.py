"""The FastAPI application factory (``uvicorn --factory geofence.service.app:create_app``)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from starlette.types import Receive, Scope, Send

from geofence.service.console import mount_console
from geofence.service.jobs import build_scheduler
from geofence.service.limits_http import BodyGuard
from geofence.service.loops import start_loops
from geofence.service.openapi_errors import document_errors
from geofence.service.routes import all_routers
from geofence.service.routes.locations import serve_locations
from geofence.service.runtime import Runtime, bootstrap
from geofence.service.settings import Settings, get_settings


class GeofenceApp(FastAPI):
    """FastAPI, with ``POST /v1/locations`` served ahead of the middleware stack and the router.

    The location feed is the one high-volume route: per 100-fix request, FastAPI's middleware layers,
    routing and dependency resolution cost about as much CPU as the ingest itself (py-spy). Its
    handler (``routes.locations.serve_locations``) applies what those layers would (body limits,
    authentication with the ``ingest`` scope, errors as ``{"detail": ...}``); the decorated route still
    documents it in OpenAPI and serves it under a ``root_path``."""

    lean_feed = True  # off: the decorated route serves it too (tests compare the two)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http" and scope["path"] == "/v1/locations" and scope["method"] == "POST"
            and self.lean_feed and not scope.get("root_path")
        ):
            scope["app"] = self
            await serve_locations(self, scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    runtime: Runtime | None = None,
    run_jobs: bool | None = None,
) -> FastAPI:
    """Build the app. ``run_jobs`` starts the periodic jobs in this process (default: the settings')."""
    settings = settings or (runtime.settings if runtime else get_settings())
    owns_engine = runtime is None and engine is None  # then the app closes it when it shuts down
    runtime = runtime or bootstrap(settings, engine)
    start_jobs = settings.scheduler.enabled if run_jobs is None else run_jobs

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the zone index and the rest of start-up live as long as the process: keep their objects out
        # of the collector's passes (measured: GC fell from ~3.4 to ~0.3 us per ingested fix)
        gc.freeze()
        roles = ("api", "worker") if start_jobs else ()
        scheduler = build_scheduler(runtime, roles) if start_jobs else None
        if scheduler:
            scheduler.start()
        # the "any" loops (zones reaching this process within a second) run whether jobs run here or not
        loops = start_loops(runtime.loops, roles, engine=runtime.engine, wakeups=runtime.wakeups)
        try:
            yield
        finally:
            loops.stop()
            if scheduler:
                scheduler.shutdown(wait=False)
            # collectable again: an app shut down inside a longer-lived process (tests, an embedding
            # program) would otherwise never be freed, nor its engine's files let go
            gc.unfreeze()
            if runtime.geofence.publisher is not None:  # GEOFENCE_BUS: flush and close the connection
                runtime.geofence.publisher.link.close()
            runtime.geofence.kept.release()  # the ingest's connection, back to the pool
            if owns_engine:  # its pooled connections closed now, not left to the collector
                runtime.engine.dispose()

    app = GeofenceApp(
        title="Geofence engine",
        version="0.1.0",
        description="Exact H3 geofencing, enter/dwell/exit presence and consent-aware campaigns.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    for router in all_routers():
        app.include_router(router)
    mount_console(
        app, engine=runtime.engine, settings=settings, legal_table=runtime.decision_policy.legal_table
    )
    ingest = runtime.settings.ingest
    app.add_middleware(BodyGuard, max_bytes=ingest.max_body_bytes, timeout_s=ingest.body_timeout_s)
    document_errors(app)
    return app
