"""How long the zone-event log keeps an event: ``ingest.zone_event_retention_days`` (395, about 13 months;
0 keeps every event), then the worker's ``geofence.purge_zone_events`` job deletes it.

Why a limit: an event says where a person was (the zone, the time, a position rounded to ~100 m, the
customer). The log is the consumers' source of truth, not an archive: the CRM export has long taken its
copy, campaign decisions and attribution look back days. So an event is deleted only when it is that old
*and* nothing still needs it — every consumer's cursor has passed it (a stopped consumer holds the purge
back; its lag in ``/metrics`` shows it), no consumer failure refers to it (an operator may still retry a
parked one), and no webhook message of it is pending. The newest event is always kept. An erasure is
apart and immediate (``geofence.service.location_data``).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, delete, exists, func, or_, select
from sqlmodel import Session

from geofence.service.tables.consumers import ConsumerFailureRow, EventConsumerRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.webhooks import WebhookDeliveryRow
from geofence.service.webhooks import ZONE_STREAM

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)
PURGE_EVERY_S = 6 * 3600.0
CHUNK = 5_000  # events deleted per transaction: the writers never wait long behind a purge
_E = ZoneEventRow.__table__.c  # type: ignore[attr-defined]
_CURSORS = EventConsumerRow.__table__.c  # type: ignore[attr-defined]
_FAILURES = ConsumerFailureRow.__table__.c  # type: ignore[attr-defined]
_DELIVERIES = WebhookDeliveryRow.__table__.c  # type: ignore[attr-defined]


def passed_by_every_cursor(seq: Any, cursors: Any) -> ColumnElement[bool]:
    """``seq`` is at or behind every cursor of a log's cursor table (``name``, ``cursor_seq``), or the log
    has no reader at all: what no consumer will read again. Both logs' purges use it."""
    slowest = select(func.min(cursors.cursor_seq)).scalar_subquery()
    return or_(~exists(select(cursors.name)), seq <= slowest)


def pending_messages(stream: str) -> Select[Any]:
    """The event ids of the webhook messages of ``stream`` still to be sent."""
    return select(_DELIVERIES.event_id).where(_DELIVERIES.status == "pending", _DELIVERIES.stream == stream)


def purgeable(before: datetime) -> list[ColumnElement[bool]]:
    """The conditions an event must meet to be deleted (see the module's docstring)."""
    newest = select(func.max(_E.seq)).scalar_subquery()
    return [
        _E.at < before, _E.seq.is_not(None), _E.seq < newest, passed_by_every_cursor(_E.seq, _CURSORS),
        _E.id.not_in(select(_FAILURES.event_id)), _E.id.not_in(pending_messages(ZONE_STREAM)),
    ]


def purge_zone_events(session: Session, *, before: datetime, chunk: int = CHUNK) -> int:
    """Delete the events ``purgeable`` before ``before``, ``chunk`` at a time, each chunk committed."""
    total = 0
    while True:
        ids = select(_E.id).where(*purgeable(before)).order_by(_E.seq).limit(chunk)
        result = session.execute(delete(ZoneEventRow).where(_E.id.in_(ids)))
        n = int(result.rowcount)  # type: ignore[attr-defined]
        session.commit()
        total += n
        if n < chunk:
            return total


def purge_zone_events_job(runtime: Runtime) -> None:
    days = runtime.settings.ingest.zone_event_retention_days
    if days <= 0:
        return
    with Session(runtime.engine) as session:
        n = purge_zone_events(session, before=runtime.now() - timedelta(days=days))
    if n:
        log.info("purged %d zone events past retention", n)
