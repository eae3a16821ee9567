"""Campaign results for the console: ``GET /v1/campaigns/{id}/stats`` kept as a snapshot per campaign and
attribution window, served at once and refreshed in the background when older than ``FRESH_S``.

Attribution reads every visit of every targeted customer (~2.5 s at 100,000 zone events): the page shows
the snapshot's time instead of making the marketer wait for each view. A snapshot older than
``STALE_S`` is not shown; the page then waits for a fresh one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from starlette.types import ASGIApp

from geofence.service import clock
from geofence.service.console.api_proxy import call_api

FRESH_S = 60.0
STALE_S = 600.0
MAX_ENTRIES = 200


@dataclass(frozen=True)
class Snapshot:
    stats: dict[str, Any] | None
    status: int
    taken_at: str  # ISO time of the computation, shown on the page
    taken_monotonic: float


class ResultSnapshots:
    def __init__(self, api: ASGIApp) -> None:
        self.api = api
        self._snapshots: dict[tuple[str, int], Snapshot] = {}
        self._refreshing: set[tuple[str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _take(self, campaign_id: str, window_hours: int, api_key: str) -> Snapshot:
        status, body, _ = await call_api(
            self.api, "GET", f"campaigns/{quote(campaign_id, safe='')}/stats", api_key=api_key,
            query=f"window_hours={window_hours}",
        )
        snap = Snapshot(body if status == 200 else None, status, clock.now().isoformat(timespec="seconds"),
                        time.monotonic())
        if status == 200:
            if len(self._snapshots) >= MAX_ENTRIES:
                self._snapshots.pop(next(iter(self._snapshots)))
            self._snapshots[(campaign_id, window_hours)] = snap
        return snap

    async def _refresh(self, key: tuple[str, int], api_key: str) -> None:
        try:
            await self._take(key[0], key[1], api_key)
        finally:
            self._refreshing.discard(key)

    async def get(self, campaign_id: str, window_hours: int, api_key: str) -> Snapshot:
        """The stats (from a snapshot when one is recent enough); ``api_key`` authorises a fresh one."""
        key = (campaign_id, window_hours)
        snap = self._snapshots.get(key)
        age = time.monotonic() - snap.taken_monotonic if snap else None
        if snap is None or age is None or age > STALE_S:
            return await self._take(campaign_id, window_hours, api_key)
        if age > FRESH_S and key not in self._refreshing:
            self._refreshing.add(key)
            task = asyncio.create_task(self._refresh(key, api_key))
            self._tasks.add(task)  # keep a reference until it ends
            task.add_done_callback(self._tasks.discard)
        return snap
