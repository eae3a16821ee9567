"""Wiring: the daily CRM export job (worker process), into ``settings.export_dir``, and its intake of
zone events: the ``crm_export`` consumer of the zone-event log, a loop in the worker that the daily run
drains first."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from campaigns.export.kinds import KIND_NAMES
from campaigns.export.pipeline import WrittenExport
from campaigns.export.scheduled import run_scheduled_export
from campaigns.export.writers import FORMATS
from campaigns.export.zone_event_queue import ExportIntake
from campaigns.ports import Clock
from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy
from geofence.service.loops import Loop
from geofence.service.settings import Settings

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)

DAILY_S = 86_400
CRM_EXPORT_CONSUMER = "crm_export"


class ExportIntakeRunner:
    """The ``crm_export`` consumer, shared by its loop and the daily run (one pass at a time in-process;
    across processes the log's advisory lock does it)."""

    def __init__(self, engine: Engine, *, now: Clock, retry: RetryPolicy | None = None) -> None:
        consumer = Consumer(CRM_EXPORT_CONSUMER, ExportIntake(engine, now=now).handle)
        self.runner = ConsumerRunner(engine, consumer, now=now, retry=retry)
        self._lock = threading.Lock()

    def run_once(self) -> bool:
        with self._lock:
            return self.runner.run_once()

    def catch_up(self) -> None:
        """Queue every event committed so far (unless another process is consuming right now)."""
        while self.run_once():
            pass


def export_intake(settings: Settings, engine: Engine, *, now: Clock) -> ExportIntakeRunner:
    scheduler = settings.scheduler
    first_delay = timedelta(seconds=scheduler.consumer_retry_s)
    retry = RetryPolicy(max_attempts=scheduler.consumer_max_attempts, first_delay=first_delay)
    return ExportIntakeRunner(engine, now=now, retry=retry)


def export_intake_loop(runtime: Runtime) -> Loop:
    """Queue each committed zone event for the export (its own follower of the events signal)."""
    return Loop(
        f"consumer:{CRM_EXPORT_CONSUMER}",
        runtime.export_intake.run_once,
        runtime.wakeups.events.follower(),
        runtime.settings.scheduler.events_poll_s,
        role="worker",
        settle_s=runtime.settings.scheduler.side_loops_settle_s,  # off an offer's path (``loops.Loop``)
    )


def export_incremental(
    engine: Engine,
    export_dir: Path,
    *,
    at: datetime,
    intake: ExportIntakeRunner,
    kinds: tuple[str, ...] = KIND_NAMES,
    formats: tuple[str, ...] = FORMATS,
    settle_s: float = 60.0,
) -> list[WrittenExport]:
    """The scheduled export with its zone-event intake drained first (the daily job, ``export all
    --incremental``)."""
    return run_scheduled_export(
        engine, export_dir, at=at, kinds=kinds, formats=formats, settle_s=settle_s, catch_up=intake.catch_up
    )


def daily_export(runtime: Runtime) -> None:
    written = export_incremental(
        runtime.engine, runtime.settings.export_dir, at=runtime.now(), intake=runtime.export_intake
    )
    log.info(
        "daily export wrote %d files (%d rows)", len(written), sum(w.rows for w in written),
        extra={"files": [str(w.path) for w in written]},
    )
