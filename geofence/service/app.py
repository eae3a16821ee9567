"""The FastAPI application factory (``uvicorn --factory geofence.service.app:create_app``)."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from geofence.service.jobs import build_scheduler
from geofence.service.routes import all_routers
from geofence.service.runtime import Runtime, build_runtime
from geofence.service.settings import Settings, get_settings


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    runtime: Runtime | None = None,
    run_jobs: bool | None = None,
) -> FastAPI:
    """Build the app. ``run_jobs`` starts the periodic jobs in this process (default: the settings')."""
    settings = settings or (runtime.settings if runtime else get_settings())
    runtime = runtime or build_runtime(settings, engine)
    start_jobs = settings.scheduler.enabled if run_jobs is None else run_jobs

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # the zone index and the rest of start-up live as long as the process: keep their objects out
        # of the collector's passes (measured: GC fell from ~3.4 to ~0.3 us per ingested fix)
        gc.freeze()
        scheduler = build_scheduler(runtime, ("api", "worker")) if start_jobs else None
        if scheduler:
            scheduler.start()
        try:
            yield
        finally:
            if scheduler:
                scheduler.shutdown(wait=False)

    app = FastAPI(
        title="Geofence engine",
        version="0.1.0",
        description="Exact H3 geofencing, enter/dwell/exit presence and consent-aware campaigns.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    for router in all_routers():
        app.include_router(router)
    for hook in runtime.services.get("app_hooks", []):
        hook(app)
    return app
