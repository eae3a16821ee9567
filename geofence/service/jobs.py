"""APScheduler 3.x wiring: periodic jobs declared in code, in memory (durable state is our tables)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)


def build_scheduler(runtime: Runtime, roles: tuple[str, ...]) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    for job in runtime.jobs:
        if job.role in roles or job.role == "any":
            scheduler.add_job(
                job.func,
                "interval",
                seconds=job.every_s,
                args=[runtime],
                id=job.id,
                replace_existing=True,
                max_instances=1,
                coalesce=True,
            )
    return scheduler
