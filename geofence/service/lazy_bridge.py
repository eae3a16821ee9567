"""The process's NATS connection for the zone-event stream, opened by the first loop that needs it.

Its own module, and ``nats_bridge`` imported only when a connection is opened, so that the embedded path
(no ``GEOFENCE_BUS``) never imports nats-py and aiohttp under it: ~0.3 s of every process's start-up,
every CLI command's included.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geofence.service.nats_bridge import NatsBridge


class LazyBridge:
    """The process's connection, opened by the first loop that needs it (API processes never do)."""

    def __init__(self, url: str, *, name: str) -> None:
        self.url, self.name = url, name
        self._bridge: NatsBridge | None = None
        self._lock = threading.Lock()

    def get(self) -> NatsBridge:
        with self._lock:
            if self._bridge is None:
                from geofence.service.nats_bridge import NatsBridge

                self._bridge = NatsBridge(self.url, name=self.name)
            return self._bridge

    def close(self) -> None:
        with self._lock:
            if self._bridge is not None:
                self._bridge.close()
                self._bridge = None
