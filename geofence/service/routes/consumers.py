"""Routes: the zone-event log's consumers — where each stands, the events it parked, and a retry.

A consumer (the campaign decisions; webhooks later) that keeps failing on an event parks it with the
error and goes on with the next ones; an operator reads the reason here and retries once fixed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel

from geofence.service import clock
from geofence.service.deps import RuntimeDep, SessionDep
from geofence.service.event_log import consumer_states, parked_events, retry_parked
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import require_scope
from geofence.service.tables._types import as_utc
from geofence.service.tables.consumers import ConsumerFailureRow
from geofence.service.wakeup import EVENTS_CHANNEL, notify

router = APIRouter(tags=["operations"])
Admin = Annotated[object, Depends(require_scope("admin"))]
Name = Annotated[str, Path(max_length=64)]


class ConsumerPublic(BaseModel):
    name: str
    cursor_seq: int
    lag: int  # events in the log past the cursor
    retrying: int  # failed events waiting for their next attempt
    parked: int  # events given up on, waiting for an operator


class ParkedEventPublic(BaseModel):
    event_id: str
    seq: int
    attempts: int
    last_error: str
    first_failed_at: datetime
    parked_at: datetime | None


class RetryAccepted(BaseModel):
    event_id: str
    due_at: datetime


@router.get("/v1/admin/consumers", summary="The zone-event log's consumers")
def list_consumers(session: SessionDep, page: PageDep, _admin: Admin) -> Paginated[ConsumerPublic]:
    states = consumer_states(session)[page.offset : page.offset + page.limit + 1]  # a handful of rows
    return page.build(states, lambda s: ConsumerPublic(**vars(s)))


def _parked(row: ConsumerFailureRow) -> ParkedEventPublic:
    return ParkedEventPublic(
        event_id=row.event_id, seq=row.seq, attempts=row.attempts, last_error=row.last_error,
        first_failed_at=as_utc(row.first_failed_at), parked_at=as_utc(row.parked_at),  # type: ignore[arg-type]
    )


@router.get("/v1/admin/consumers/{name}/parked", summary="Events a consumer parked, oldest first")
def list_parked(
    name: Name, session: SessionDep, page: PageDep, _admin: Admin
) -> Paginated[ParkedEventPublic]:
    return page.build(parked_events(session, name, limit=page.limit + 1, offset=page.offset), _parked)


@router.post(
    "/v1/admin/consumers/{name}/parked/{event_id}/retry",
    status_code=202,
    summary="Retry a parked event now (a fresh round of attempts)",
    responses={404: {"description": "no such parked event"}},
)
def retry_parked_event(
    name: Name, event_id: Annotated[str, Path(max_length=64)], session: SessionDep, runtime: RuntimeDep,
    _admin: Admin,
) -> RetryAccepted:
    at = clock.now()
    if not retry_parked(session, name, event_id, at=at):
        raise HTTPException(404, detail=f"consumer {name!r} has no parked event {event_id!r}")
    session.commit()
    runtime.wakeups.events.set()  # this process's consumers, and (PostgreSQL) the worker's
    notify(runtime.engine, EVENTS_CHANNEL)
    return RetryAccepted(event_id=event_id, due_at=at)
