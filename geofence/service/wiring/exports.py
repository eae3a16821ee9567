"""Wiring: the daily CRM export job (worker process), into ``settings.export_dir``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from campaigns.export.scheduled import run_scheduled_export

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)

DAILY_S = 86_400


def daily_export(runtime: Runtime) -> None:
    written = run_scheduled_export(runtime.engine, runtime.settings.export_dir, at=runtime.now())
    log.info(
        "daily export wrote %d files (%d rows)", len(written), sum(w.rows for w in written),
        extra={"files": [str(w.path) for w in written]},
    )
