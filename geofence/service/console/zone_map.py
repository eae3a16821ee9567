"""Every zone for the console's maps, as the GeoJSON of ``zones.io.write_zones_geojson``, kept between
requests while the zones table is unchanged.

The map needs all zones at once (10,000 of them: ``GET /v1/zones/export`` rebuilds that document at each
call, ~1 s). A cheap aggregate over the table (live count, latest write, latest deletion) tells whether
any process changed a zone since the document was built; the document is rebuilt at least every
``MAX_AGE_S`` anyway, for a write another process stamped earlier than the latest one (clock skew).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from geofence.service.tables.zones import ZoneRow
from zones.io import write_zones_geojson
from zones.model import Zone

MAX_AGE_S = 60.0


class ZoneMap:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._stamp: tuple[Any, ...] | None = None
        self._body = b""
        self._built_at = 0.0
        self._lock = threading.Lock()

    def _current_stamp(self, conn: Any) -> tuple[Any, ...]:
        return tuple(conn.execute(select(
            func.count(ZoneRow.id), func.count(ZoneRow.deleted_at), func.max(ZoneRow.updated_at),  # type: ignore[arg-type]
            func.max(ZoneRow.deleted_at),
        )).one())

    def geojson(self) -> bytes:
        """The FeatureCollection as JSON bytes (blocking: call it in a thread)."""
        with self.engine.connect() as conn:
            stamp = self._current_stamp(conn)
            if self._fresh(stamp):
                return self._body
            with self._lock:
                if self._fresh(stamp):
                    return self._body
                rows = conn.execute(
                    select(ZoneRow.data).where(ZoneRow.deleted_at.is_(None)).order_by(ZoneRow.id)  # type: ignore[union-attr]
                ).scalars()
                body = json.dumps(write_zones_geojson(Zone.from_dict(d) for d in rows)).encode()
                self._stamp, self._body, self._built_at = stamp, body, time.monotonic()
                return body

    def _fresh(self, stamp: tuple[Any, ...]) -> bool:
        return stamp == self._stamp and time.monotonic() - self._built_at < MAX_AGE_S
