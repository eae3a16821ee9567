"""Zone events on the bus: the relay publishes the committed log once (JetStream de-duplicates a batch
published again), stream consumers shared by several runners handle each event, and a handler that
keeps failing is retried, then parked in the same records, admin routes and metrics as the log path."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.app import create_app
from geofence.service.event_log import Consumer, RetryPolicy, append
from geofence.service.event_stream import (
    RELAY,
    EventRelay,
    LazyBridge,
    StreamConsumer,
    decode_event,
    encode_event,
)
from geofence.service.settings import EventStreamSettings, Settings
from geofence.service.tables.consumers import ConsumerFailureRow, EventConsumerRow
from geofence.service.tables.presence import ZoneEventRow
from tests.service.bus import drop_stream, nats_url, unique_stream

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def events(*ids: str) -> list[ZoneEvent]:
    return [
        ZoneEvent(id=i, zone_id="z1", device_id=f"d-{i}", kind=TransitionKind.ENTER, at=T0, visit_id=f"v-{i}",
                  reason="test", lat=48.857, lng=2.352)
        for i in ids
    ]


@pytest.fixture
def bus() -> Iterator[tuple[str, EventStreamSettings]]:
    url = nats_url()
    conf = unique_stream(ack_wait_s=2.0, batch=50)
    yield url, conf
    drop_stream(url, conf.name)


@pytest.fixture
def bridges(bus: tuple[str, EventStreamSettings]) -> Iterator[list[LazyBridge]]:
    made = [LazyBridge(bus[0], name=f"test-{i}") for i in range(2)]
    yield made
    for bridge in made:
        bridge.close()


def now() -> datetime:
    return datetime.now(UTC)


def stream_messages(bridge: LazyBridge, name: str) -> int:
    info = bridge.get().call(bridge.get().js.stream_info(name))
    return int(info.state.messages)


def test_an_event_survives_the_message_round_trip() -> None:
    (event,) = events("a")
    assert decode_event(encode_event(event)) == event


def test_the_relay_publishes_each_committed_event_once_even_when_it_publishes_a_batch_again(
    engine: Engine, bus: tuple[str, EventStreamSettings], bridges: list[LazyBridge]
) -> None:
    _, conf = bus
    append(engine, events("a", "b", "c"), recorded_at=T0)
    relay = EventRelay(engine, bridges[0], conf, now=now, batch=2)
    assert relay.run_once() is True  # a full batch: more may wait
    assert relay.run_once() is False
    assert stream_messages(bridges[0], conf.name) == 3
    with Session(engine) as s:  # a relay killed after publishing, before moving its cursor
        s.execute(update(EventConsumerRow).where(EventConsumerRow.name == RELAY).values(cursor_seq=0))
        s.commit()
    while relay.run_once():
        pass
    assert stream_messages(bridges[0], conf.name) == 3  # the repeats were dropped by Nats-Msg-Id
    append(engine, events("d"), recorded_at=T0)
    relay.run_once()
    assert stream_messages(bridges[0], conf.name) == 4


def test_a_deployment_moving_to_the_bus_relays_only_what_its_database_consumers_have_not_handled(
    engine: Engine, bus: tuple[str, EventStreamSettings], bridges: list[LazyBridge]
) -> None:
    _, conf = bus
    append(engine, events("old-1", "old-2", "new-1"), recorded_at=T0)
    with Session(engine) as s:
        seqs = list(s.execute(select(ZoneEventRow.seq).order_by(ZoneEventRow.seq)).scalars())
        s.add(EventConsumerRow(name="campaigns", cursor_seq=seqs[1], updated_at=T0))  # handled old-1, old-2
        s.add(EventConsumerRow(name="webhooks", cursor_seq=seqs[2], updated_at=T0))
        s.commit()
    EventRelay(engine, bridges[0], conf, now=now).run_once()
    assert stream_messages(bridges[0], conf.name) == 1  # new-1 only: nothing decided twice, none skipped


def test_two_runners_of_one_stream_consumer_share_the_events_and_handle_each_once(
    engine: Engine, bus: tuple[str, EventStreamSettings], bridges: list[LazyBridge]
) -> None:
    _, conf = bus
    ids = [f"e{i:03d}" for i in range(120)]
    append(engine, events(*ids), recorded_at=T0)
    EventRelay(engine, bridges[0], conf, now=now, batch=500).run_once()
    seen: list[tuple[int, str]] = []
    lock = threading.Lock()

    def handler(runner: int) -> Consumer:
        def handle(event: ZoneEvent) -> None:
            with lock:
                seen.append((runner, event.id))
        return Consumer("shared", handle)

    runners = [StreamConsumer(engine, handler(i), bridges[i], conf.model_copy(update={"batch": 7}), now=now,
                              retry=RetryPolicy(), threads=2) for i in range(2)]
    deadline = time.monotonic() + 30
    while len(seen) < len(ids) and time.monotonic() < deadline:
        threads = [threading.Thread(target=r.run_once) for r in runners]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(e for _, e in seen) == ids  # every event, none twice
    assert {r for r, _ in seen} == {0, 1}  # both runners took a share
    with Session(engine) as s:  # the cursor (the /v1/admin/consumers lag) reached the log's end
        assert s.get(EventConsumerRow, "shared").cursor_seq == max(  # type: ignore[union-attr]
            int(r) for r in s.execute(select(EventConsumerRow.cursor_seq)).scalars()
        )


def test_a_consumer_started_before_the_relay_makes_the_stream_and_waits(
    engine: Engine, bus: tuple[str, EventStreamSettings], bridges: list[LazyBridge]
) -> None:
    _, conf = bus
    seen: list[str] = []
    consumer = StreamConsumer(engine, Consumer("early", lambda e: seen.append(e.id)), bridges[0], conf,
                              now=now, retry=RetryPolicy())
    assert consumer.run_once() is False  # no stream yet: made, nothing to pull
    append(engine, events("a"), recorded_at=T0)
    EventRelay(engine, bridges[1], conf, now=now).run_once()
    consumer.run_once()
    assert seen == ["a"]


def test_a_failing_handler_is_retried_then_parked_with_its_reason_then_retried_by_an_operator(
    engine: Engine, settings: Settings, bus: tuple[str, EventStreamSettings], bridges: list[LazyBridge]
) -> None:
    _, conf = bus
    append(engine, events("a", "b"), recorded_at=T0)
    EventRelay(engine, bridges[0], conf, now=now).run_once()
    tries: list[str] = []
    failing = {"a"}

    def handle(event: ZoneEvent) -> None:
        tries.append(event.id)
        if event.id in failing:
            raise RuntimeError(f"provider of {event.id} is down")

    retry = RetryPolicy(max_attempts=3, first_delay=timedelta(milliseconds=100))
    consumer = StreamConsumer(engine, Consumer("webhooks", handle), bridges[0], conf, now=now, retry=retry)
    deadline = time.monotonic() + 20
    while tries.count("a") < 3 and time.monotonic() < deadline:
        consumer.run_once()
    consumer.run_once()  # nothing more comes: the stream terminated it
    assert (tries.count("a"), tries.count("b")) == (3, 1)
    with Session(engine) as s:
        (row,) = s.execute(select(ConsumerFailureRow)).scalars()
        assert (row.consumer, row.event_id, row.attempts) == ("webhooks", "a", 3)
        assert row.parked_at is not None and row.last_error == "RuntimeError: provider of a is down"
    with TestClient(create_app(settings, engine=engine)) as client:
        state = {c["name"]: c for c in client.get("/v1/admin/consumers").json()["items"]}["webhooks"]
        assert (state["lag"], state["parked"]) == (0, 1)
        metrics = client.get("/metrics").text
        assert 'geofence_consumer_parked_events{consumer="webhooks"} 1.0' in metrics
        assert 'geofence_consumer_events_total{consumer="webhooks",outcome="parked"}' in metrics
        failing.clear()  # the operator fixed the cause
        assert client.post("/v1/admin/consumers/webhooks/parked/a/retry").status_code == 202
        consumer._failures_checked = 0.0  # due now, not after the next second
        consumer.run_once()
        assert client.get("/v1/admin/consumers/webhooks/parked").json()["items"] == []
    assert tries.count("a") == 4


def test_without_the_bus_no_connection_is_made_and_consumers_keep_their_database_cursor(
    settings: Settings, sqlite_engine: Engine
) -> None:
    from geofence.service.runtime import bootstrap

    runtime = bootstrap(settings, engine=sqlite_engine)
    assert runtime.nats is None
    ids = {loop.id for loop in runtime.loops}
    assert {"consumer:campaigns", "consumer:webhooks"} <= ids and f"consumer:{RELAY}" not in ids


def test_with_the_bus_the_worker_relays_the_log_and_its_consumers_read_the_stream(
    settings: Settings, sqlite_engine: Engine
) -> None:
    from geofence.service.runtime import bootstrap

    runtime = bootstrap(settings.model_copy(update={"bus": "nats://127.0.0.1:1"}), engine=sqlite_engine)
    assert runtime.nats is not None  # not connected yet: API processes never open it
    loops = {loop.id: loop for loop in runtime.loops}
    assert f"consumer:{RELAY}" in loops
    for name in ("campaigns", "webhooks"):
        assert type(loops[f"consumer:{name}"].work.__self__).__name__ == "StreamConsumer"  # type: ignore[attr-defined]
