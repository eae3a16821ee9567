"""The zone-event log's retention: an old event goes once nothing needs it, never before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy, append
from geofence.service.event_retention import purge_zone_events
from geofence.service.runtime import jobs_for
from geofence.service.settings import IngestSettings, Settings
from geofence.service.tables.consumers import EventConsumerRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.webhooks import WebhookDeliveryRow

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=400)
KEEP = NOW - timedelta(days=395)


def event(i: str, at: datetime) -> ZoneEvent:
    return ZoneEvent(id=i, zone_id="z1", device_id=f"d-{i}", kind=TransitionKind.ENTER, at=at,
                     visit_id=f"v-{i}", reason="test")


def kept(engine: Engine) -> list[str]:
    with Session(engine) as s:
        return list(s.execute(select(ZoneEventRow.id).order_by(ZoneEventRow.seq)).scalars())


def consume(engine: Engine, name: str, failing: frozenset[str] = frozenset()) -> None:
    def handle(e: ZoneEvent) -> None:
        if e.id in failing:
            raise RuntimeError("down")

    runner = ConsumerRunner(engine, Consumer(name, handle), now=lambda: NOW, batch=100, failure_check_s=0,
                            retry=RetryPolicy(max_attempts=1, first_delay=timedelta(seconds=1)))
    while runner.run_once():
        pass


def purge(engine: Engine) -> int:
    with Session(engine) as s:
        return purge_zone_events(s, before=KEEP, chunk=2)


def test_an_old_event_goes_once_every_consumer_passed_it_and_nothing_refers_to_it(engine: Engine) -> None:
    append(engine, [event("a", OLD), event("b", OLD), event("c", OLD)], recorded_at=OLD)
    consume(engine, "fast")
    append(engine, [event("d", OLD), event("parked", OLD), event("hooked", OLD), event("e", OLD)],
           recorded_at=OLD)
    append(engine, [event("recent", NOW - timedelta(days=3))], recorded_at=NOW)
    assert purge(engine) == 3  # a, b, c: "fast" passed them; no cursor was past d yet
    assert kept(engine) == ["d", "parked", "hooked", "e", "recent"]
    consume(engine, "fast", failing=frozenset({"parked"}))  # parked: an operator may still retry it
    with Session(engine) as s:
        s.add(WebhookDeliveryRow(id="msg_1", endpoint_id="ep", event_id="hooked", event_type="zone.entered",
                                 seq=6, occurred_at=OLD, payload="{}", next_attempt_at=NOW, created_at=NOW))
        s.commit()
    consume(engine, "slow")  # a second consumer, behind until now
    assert purge(engine) == 2  # d and e; "recent" is young, "parked" failed, "hooked" waits to be sent
    assert kept(engine) == ["parked", "hooked", "recent"]


def test_a_consumer_behind_holds_the_purge_back_and_the_newest_event_is_kept(engine: Engine) -> None:
    append(engine, [event("a", OLD)], recorded_at=OLD)
    consume(engine, "fast")
    append(engine, [event("b", OLD)], recorded_at=OLD)
    consume(engine, "fast")
    append(engine, [event("c", OLD)], recorded_at=OLD)  # nobody has read it
    with Session(engine) as s:
        s.add(EventConsumerRow(name="stopped", cursor_seq=0, updated_at=NOW))
        s.commit()
    assert purge(engine) == 0
    consume(engine, "stopped")
    consume(engine, "fast")
    assert purge(engine) == 2 and kept(engine) == ["c"]  # every cursor is past c, but it is the newest


def test_the_purge_runs_in_the_worker_unless_events_are_kept_for_ever(settings: Settings) -> None:
    (job,) = [j for j in jobs_for(settings) if j.id == "geofence.purge_zone_events"]
    assert job.role == "worker"
    forever = settings.model_copy(update={"ingest": IngestSettings(zone_event_retention_days=0)})
    assert not [j for j in jobs_for(forever) if j.id == "geofence.purge_zone_events"]
