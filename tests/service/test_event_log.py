"""The zone-event log: sequence in commit order, per-consumer cursors, retries, parking, admin routes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.app import create_app
from geofence.service.db import ConnectionUnit
from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy, append, consumer_states
from geofence.service.settings import Settings
from geofence.service.tables.consumers import ConsumerFailureRow, EventConsumerRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.unit_of_work import SqlEventStore

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def events(*ids: str) -> list[ZoneEvent]:
    return [
        ZoneEvent(id=i, zone_id="z1", device_id=f"d-{i}", kind=TransitionKind.ENTER, at=T0, visit_id=f"v-{i}",
                  reason="test")
        for i in ids
    ]


class Recorder:
    """A consumer's handler: records what it saw; raises for the ids in ``failing``."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.seen: list[str] = []
        self.failing = failing or set()

    def __call__(self, event: ZoneEvent) -> None:
        self.seen.append(event.id)
        if event.id in self.failing:
            raise RuntimeError(f"provider of {event.id} is down")


def runner(engine: Engine, name: str, handle: Recorder, **kw: object) -> ConsumerRunner:
    return ConsumerRunner(  # type: ignore[arg-type]
        engine, Consumer(name, handle), now=lambda: datetime.now(UTC), batch=3, failure_check_s=0, **kw
    )


def test_events_are_numbered_in_the_order_their_transactions_commit(engine: Engine) -> None:
    append(engine, events("a", "b"), recorded_at=T0)
    append(engine, events("c"), recorded_at=T0)
    with Session(engine) as s:
        got = s.execute(select(ZoneEventRow.id, ZoneEventRow.seq).order_by(ZoneEventRow.seq)).all()
    first = got[0][1]
    assert [tuple(r) for r in got] == [("a", first), ("b", first + 1), ("c", first + 2)]


@pytest.mark.postgres
def test_a_reader_never_passes_an_event_a_slower_transaction_has_yet_to_commit(pg_url: str) -> None:
    """The second writer waits for the first's commit to take its numbers: no gap behind a cursor."""
    from geofence.service.db import create_schema, make_engine

    engine = make_engine(pg_url)
    create_schema(engine)
    try:
        with Session(engine) as s:
            base = int(s.execute(select(ZoneEventRow.seq).order_by(ZoneEventRow.seq.desc())).scalar() or 0)  # type: ignore[union-attr]
        slow = ConnectionUnit(engine)
        SqlEventStore(slow).add(events("slow"), recorded_at=T0)  # numbered, not committed
        fast_done = threading.Event()

        def fast() -> None:
            append(engine, events("fast"), recorded_at=T0)
            fast_done.set()

        thread = threading.Thread(target=fast)
        thread.start()
        assert not fast_done.wait(0.5)  # held behind the slow transaction's lock
        seen = Recorder()
        consumer = ConsumerRunner(engine, Consumer("order-test", seen), now=lambda: datetime.now(UTC))
        with Session(engine) as s:
            s.add(EventConsumerRow(name="order-test", cursor_seq=base))
            s.commit()
        consumer.run_once()
        assert seen.seen == []  # neither is visible yet, and the cursor did not move
        slow.commit()
        slow.close()
        thread.join(5)
        consumer.run_once()
        assert seen.seen == ["slow", "fast"]
    finally:
        with engine.begin() as conn:
            conn.execute(ZoneEventRow.__table__.delete())  # type: ignore[attr-defined]
            conn.execute(EventConsumerRow.__table__.delete())  # type: ignore[attr-defined]
        engine.dispose()


def test_each_consumer_keeps_its_own_cursor_and_sees_every_event_once(engine: Engine) -> None:
    append(engine, events("a", "b", "c", "d"), recorded_at=T0)
    first, second = Recorder(), Recorder()
    one, two = runner(engine, "one", first), runner(engine, "two", second)
    assert one.run_once() is True  # a full batch of 3: more may be waiting
    assert one.run_once() is False
    assert one.run_once() is False
    append(engine, events("e"), recorded_at=T0)
    one.run_once()
    while two.run_once():
        pass
    assert first.seen == ["a", "b", "c", "d", "e"] == second.seen
    with Session(engine) as s:
        last = s.execute(select(ZoneEventRow.seq).where(ZoneEventRow.id == "e")).scalar_one()
        cursors = {r.name: r.cursor_seq for r in s.execute(select(EventConsumerRow)).scalars()}
    assert cursors == {"one": last, "two": last}


def test_a_failing_event_is_retried_with_backoff_then_parked_without_holding_up_the_others(
    engine: Engine,
) -> None:
    append(engine, events("a", "b", "c"), recorded_at=T0)
    handler = Recorder(failing={"b"})
    retry = RetryPolicy(max_attempts=3, first_delay=timedelta(seconds=10))
    other = Recorder()
    with freeze_time(T0) as frozen:
        consumer = runner(engine, "flaky", handler, retry=retry)
        consumer.run_once()
        runner(engine, "steady", other).run_once()
        assert handler.seen == ["a", "b", "c"] and other.seen == ["a", "b", "c"]
        consumer.run_once()  # not due yet
        assert handler.seen == ["a", "b", "c"]
        frozen.tick(timedelta(seconds=10))
        consumer.run_once()  # second attempt, fails: next in 20 s
        frozen.tick(timedelta(seconds=19))
        consumer.run_once()
        assert handler.seen.count("b") == 2
        frozen.tick(timedelta(seconds=1))
        consumer.run_once()  # third attempt: parked
        frozen.tick(timedelta(hours=1))
        consumer.run_once()
    assert handler.seen.count("b") == 3
    with Session(engine) as s:
        (row,) = s.execute(select(ConsumerFailureRow)).scalars()
        assert (row.consumer, row.event_id, row.attempts) == ("flaky", "b", 3)
        assert row.parked_at is not None and row.last_error == "RuntimeError: provider of b is down"
        states = {c.name: c for c in consumer_states(s)}
    assert (states["flaky"].parked, states["flaky"].lag, states["steady"].parked) == (1, 0, 0)


def test_a_parked_event_is_listed_retried_by_an_operator_and_shown_in_metrics(
    engine: Engine, settings: Settings
) -> None:
    append(engine, events("a", "b"), recorded_at=T0)
    handler = Recorder(failing={"a"})
    consumer = runner(engine, "webhooks", handler, retry=RetryPolicy(max_attempts=1))
    consumer.run_once()
    with TestClient(create_app(settings, engine=engine)) as client:
        (state,) = client.get("/v1/admin/consumers").json()["items"]
        assert (state["name"], state["lag"], state["retrying"], state["parked"]) == ("webhooks", 0, 0, 1)
        (parked,) = client.get("/v1/admin/consumers/webhooks/parked").json()["items"]
        assert (parked["event_id"], parked["attempts"]) == ("a", 1)
        assert parked["last_error"] == "RuntimeError: provider of a is down"
        metrics = client.get("/metrics").text
        assert 'geofence_consumer_parked_events{consumer="webhooks"} 1.0' in metrics
        assert client.post("/v1/admin/consumers/webhooks/parked/nope/retry").status_code == 404
        handler.failing.clear()  # the operator fixed the cause
        answer = client.post("/v1/admin/consumers/webhooks/parked/a/retry")
        assert answer.status_code == 202 and answer.json()["event_id"] == "a"
        consumer.run_once()
        assert client.get("/v1/admin/consumers/webhooks/parked").json()["items"] == []
        assert 'geofence_consumer_parked_events{consumer="webhooks"} 0.0' in client.get("/metrics").text
    assert handler.seen == ["a", "b", "a"]


def test_an_event_handed_again_after_a_crash_keeps_its_first_failure_record(engine: Engine) -> None:
    """The cursor moves after the batch: a crash before it hands the batch again (at least once)."""
    append(engine, events("a"), recorded_at=T0)
    handler = Recorder(failing={"a"})
    consumer = runner(engine, "c", handler)
    consumer.run_once()
    with Session(engine) as s:  # as if the process died before its cursor moved
        s.execute(EventConsumerRow.__table__.update().values(cursor_seq=0))  # type: ignore[attr-defined]
        s.commit()
    consumer.run_once()
    with Session(engine) as s:
        (row,) = s.execute(select(ConsumerFailureRow)).scalars()
    assert (row.attempts, handler.seen) == (1, ["a", "a"])


def test_a_commit_with_events_wakes_this_process_consumers_and_a_rollback_does_not(
    engine: Engine, settings: Settings
) -> None:
    from geofence.service.runtime import bootstrap
    from tests.geofence.tracks import STORE, fix
    from zones.model import Circle, Zone

    runtime = bootstrap(settings, engine)
    service = runtime.geofence
    service.location_consent = None
    service.save_zones([Zone("store", "Store", Circle(STORE[0], STORE[1], 60))], at=T0)
    runtime.wakeups.events.wait(0)
    outside = fix(500, 0, 0)
    service.ingest([outside], at=outside.recorded_at)
    assert runtime.wakeups.events.wait(0) is False  # nothing written to the log
    inside = fix(0, 0, 60)
    assert [e.kind.value for e in service.ingest([inside], at=inside.recorded_at).events] == ["enter"]
    assert runtime.wakeups.events.wait(0) is True


@pytest.mark.postgres
def test_a_listener_is_woken_by_the_commit_of_events_in_another_connection(pg_url: str) -> None:
    from geofence.service.db import create_schema, make_engine
    from geofence.service.wakeup import EVENTS_CHANNEL, PgListener, Wakeup

    engine = make_engine(pg_url)
    create_schema(engine)
    woken = Wakeup()
    listener = PgListener(engine, {EVENTS_CHANNEL: woken})
    listener.start()
    try:
        assert listener.listening.wait(10)
        woken.wait(0)  # set once on connecting
        unit = ConnectionUnit(engine)
        SqlEventStore(unit).add(events("n1"), recorded_at=T0)
        assert woken.wait(0.3) is False  # not before the commit
        unit.commit()
        unit.close()
        assert woken.wait(5) is True
    finally:
        listener.stop()
        listener.join(5)
        with engine.begin() as conn:
            conn.execute(ZoneEventRow.__table__.delete())  # type: ignore[attr-defined]
        engine.dispose()


def test_a_process_listens_only_on_the_channels_its_loops_wait_for() -> None:
    """An API process's only loop is the zone sync: it listens for configuration changes, and a batch
    that commits events elsewhere does not wake it. A worker's consumers wait on followers of the
    events' signal, its dispatcher on the outbox's."""
    from geofence.service.loops import Loop, listened
    from geofence.service.wakeup import CONFIG_CHANNEL, EVENTS_CHANNEL, OUTBOX_CHANNEL, Wakeups

    wakeups = Wakeups()
    zones_sync = Loop("geofence.zones_sync", lambda: False, wakeups.config, 0.5, role="any")
    consumer = Loop("consumer:webhooks", lambda: False, wakeups.events.follower(), 1.0)
    dispatch = Loop("dispatch", lambda: False, wakeups.outbox, 1.0)
    assert listened(wakeups, []) == {}
    assert listened(wakeups, [zones_sync]) == {CONFIG_CHANNEL: wakeups.config}
    assert listened(wakeups, [zones_sync, consumer, dispatch]) == {
        CONFIG_CHANNEL: wakeups.config, EVENTS_CHANNEL: wakeups.events, OUTBOX_CHANNEL: wakeups.outbox,
    }
