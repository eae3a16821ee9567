"""Where the live page's events come from: a tail of the ``zone_events`` and ``deliveries`` tables.

The SSE endpoint only asks ``poll()`` for what is new. Zone events are read by their place in the log
(``seq``, numbered in commit order: nothing is missed and nothing needs an index of its own). Decisions
and arrivals are ordered by the time they were written (``created_at`` / ``alerted_at``); a writer can
commit a little after stamping that time, so each poll re-reads a short overlap and skips the ids it
already gave. Nothing personal leaves: no customer id, phone number or push token, only the device id,
zone, kind and the decision's reason.
Store arrival alerts (``store_arrivals``) show as the zone and the time only: the first name went to
the store, not to the marketer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from campaigns.storage.arrivals import StoreArrival
from geofence.service.tables._types import as_utc
from geofence.service.tables.campaigns import Delivery
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.zones import ZoneRow

OVERLAP = timedelta(seconds=5)
BATCH = 1000


@dataclass
class _Cursor:
    after: datetime
    seen: set[str] = field(default_factory=set)  # ids given lately (a set: one lookup per row)
    order: deque[str] = field(default_factory=deque)  # the same ids, oldest first, to forget them


class LiveFeed:
    """New zone events and decisions since the feed was opened (blocking: open it and poll in a thread)."""

    def __init__(self, engine: Engine, *, start_at: datetime) -> None:
        self.engine = engine
        with engine.connect() as conn:  # the log position read up to: its end, as the page connects
            end = select(func.coalesce(func.max(ZoneEventRow.seq), 0))
            self._events_after: int = conn.execute(end).scalar_one()
        self._decisions = _Cursor(start_at)
        self._arrivals = _Cursor(start_at)
        self._zone_names: dict[str, str] = {}

    def poll(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            events = self._new_events(conn)
            decisions = conn.execute(
                select(Delivery.id, Delivery.campaign_id, Delivery.zone_id, Delivery.device_id,
                       Delivery.channel, Delivery.status, Delivery.reason, Delivery.created_at)
                .where(Delivery.created_at >= self._decisions.after - OVERLAP)  # type: ignore[arg-type]
                .order_by(Delivery.created_at, Delivery.id).limit(BATCH)  # type: ignore[arg-type]
            ).all()
            arrivals = conn.execute(
                select(StoreArrival.id, StoreArrival.zone_id, StoreArrival.alerted_at)
                .where(StoreArrival.alerted_at >= self._arrivals.after - OVERLAP)  # type: ignore[operator]
                .order_by(StoreArrival.alerted_at, StoreArrival.id).limit(BATCH)  # type: ignore[arg-type]
            ).all()
            self._learn_zone_names(conn, {r.zone_id for rows in (events, decisions, arrivals) for r in rows})
        out: list[dict[str, Any]] = [
            {
                "type": "zone_event", "id": r.id, "zone_id": r.zone_id,
                "zone_name": self._zone_names.get(r.zone_id, r.zone_id), "device_id": r.device_id,
                "kind": r.kind.upper(), "at": _iso(r.at), "reason": r.reason, "lat": r.lat, "lng": r.lng,
            }
            for r in events
        ]
        out.extend(
            {
                "type": "decision", "id": r.id, "campaign_id": r.campaign_id, "zone_id": r.zone_id,
                "zone_name": self._zone_names.get(r.zone_id or "", r.zone_id), "device_id": r.device_id,
                "channel": r.channel, "status": r.status, "reason": r.reason, "at": _iso(r.created_at),
            }
            for r in decisions if self._fresh(self._decisions, r.id, r.created_at)
        )
        out.extend(
            {
                "type": "arrival", "id": r.id, "zone_id": r.zone_id,
                "zone_name": self._zone_names.get(r.zone_id, r.zone_id), "at": _iso(r.alerted_at),
            }
            for r in arrivals if self._fresh(self._arrivals, r.id, r.alerted_at)
        )
        return out

    def _new_events(self, conn: Any) -> list[Any]:
        """The zone events after the last one given, in log order."""
        seq = ZoneEventRow.seq
        rows = conn.execute(
            select(ZoneEventRow.id, ZoneEventRow.zone_id, ZoneEventRow.device_id, ZoneEventRow.kind,
                   ZoneEventRow.at, ZoneEventRow.reason, ZoneEventRow.lat, ZoneEventRow.lng, seq)
            .where(seq > self._events_after).order_by(seq).limit(BATCH)  # type: ignore[operator]
        ).all()
        if rows:
            self._events_after = rows[-1].seq
        return list(rows)

    @staticmethod
    def _fresh(cursor: _Cursor, row_id: str, written_at: datetime | None) -> bool:
        if row_id in cursor.seen:
            return False
        cursor.seen.add(row_id)
        cursor.order.append(row_id)
        if len(cursor.order) > 4 * BATCH:
            cursor.seen.discard(cursor.order.popleft())
        written = as_utc(written_at)
        if written is not None and written > cursor.after:
            cursor.after = written
        return True

    def _learn_zone_names(self, conn: Any, zone_ids: set[str | None]) -> None:
        missing = [z for z in zone_ids if z and z not in self._zone_names]
        if missing:
            rows = conn.execute(select(ZoneRow.id, ZoneRow.name).where(ZoneRow.id.in_(missing)))  # type: ignore[attr-defined]
            self._zone_names.update({r.id: r.name for r in rows})


def _iso(at: datetime | None) -> str | None:
    value = as_utc(at)
    return value.isoformat() if value else None
