"""Across real processes on PostgreSQL and NATS: two ``geofence worker`` processes share the events
stream (``GEOFENCE_BUS`` set), one of them is ``kill -9``-ed again and again while events are committed
and decided, and every event is still decided exactly once, none lost — the relay republishing after a
kill is de-duplicated by ``Nats-Msg-Id``, a consumer's unacknowledged events are handed to the other."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.db import make_engine
from geofence.service.event_log import append
from geofence.service.nats_bridge import NatsBridge
from geofence.service.settings import EventStreamSettings
from tests.service.bus import drop_stream, nats_url, unique_stream
from tests.service.processes import (
    ZONE_ID,
    decided,
    fresh_postgres,
    process_env,
    seed_world,
    start_worker,
    stop,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


@pytest.fixture
def stream() -> Iterator[tuple[str, EventStreamSettings]]:
    url = nats_url()
    conf = unique_stream()
    yield url, conf
    drop_stream(url, conf.name)


def commit_events(database_url: str, first: int, count: int) -> None:
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    append(engine, [
        ZoneEvent(id=f"ev-{i:05d}", zone_id=ZONE_ID, device_id=f"dev-{i}", kind=TransitionKind.ENTER, at=now,
                  visit_id=f"visit-{i}", reason="test")
        for i in range(first, first + count)
    ], recorded_at=now)
    engine.dispose()


def wait_running(log: Path, starts: int, timeout_s: float = 60.0) -> None:
    """Until the worker logging to ``log`` has started its loops for the ``starts``-th time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and log.read_text(errors="replace").count("worker running") >= starts:
            return
        time.sleep(0.05)
    raise TimeoutError(f"worker not running: see {log}")


def stored_messages(url: str, name: str) -> int:
    bridge = NatsBridge(url, name="test-inspect")
    try:
        return int(bridge.call(bridge.js.stream_info(name)).state.messages)
    finally:
        bridge.close()


def test_every_event_is_decided_exactly_once_when_workers_sharing_the_stream_are_killed(
    pg_database: str, stream: tuple[str, EventStreamSettings], tmp_path: Path
) -> None:
    url, conf = stream
    events, chunk, kills = 300, 50, 4
    seed_world(pg_database, events)
    env = process_env(
        pg_database, tmp_path, GEOFENCE_BUS=url, GEOFENCE_EVENT_STREAM__NAME=conf.name,
        GEOFENCE_EVENT_STREAM__SUBJECT_PREFIX=conf.subject_prefix, GEOFENCE_EVENT_STREAM__ACK_WAIT_S="2",
        GEOFENCE_EVENT_STREAM__BATCH="10", GEOFENCE_SCHEDULER__EVENTS_POLL_S="0.2",
    )
    rng = random.Random(7)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [start_worker(env, log) for log in logs]
    committed, at_kill = 0, []
    try:
        for k in range(kills):  # worker 0 is killed each time; worker 1 lives throughout
            wait_running(logs[0], starts=k + 1)  # consuming, not still importing
            commit_events(pg_database, committed, chunk)  # the relay is publishing while we kill
            committed += chunk
            before = len(decided(pg_database))
            deadline = time.monotonic() + 60
            while len(decided(pg_database)) <= before and time.monotonic() < deadline:
                assert all(w.poll() is None for w in workers), f"a worker exited: see {tmp_path}/worker-*.log"
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.06))
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait(10)
            at_kill.append(len(decided(pg_database)))
            workers[0] = start_worker(env, logs[0])
        commit_events(pg_database, committed, events - committed)
        deadline = time.monotonic() + 90
        while len(decided(pg_database)) < events and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        for w in workers:
            stop(w)
    assert all(0 < n < events for n in at_kill), at_kill  # each kill landed mid-stream
    counts = decided(pg_database)
    assert len(counts) == events, f"{events - len(counts)} events lost"
    assert set(counts.values()) == {1}  # none decided twice
    assert stored_messages(url, conf.name) == events  # the relay's repeats were de-duplicated
