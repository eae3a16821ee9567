"""Across real processes on PostgreSQL: the zone-event log survives ``kill -9`` of its consumer, and
API processes agree on zones and presence (``geofence serve`` processes and a ``geofence worker``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.service.processes import (
    STORE,
    ZONE_ID,
    Api,
    api_processes,
    crash_loop,
    decided,
    events_of,
    events_of_one_process,
    fresh_postgres,
    post_fixes,
    process_env,
    seed_world,
    seed_zones,
    start_worker,
    stop,
    walk,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    """A database of its own (the processes share it); ``pg_url`` skips, or fails under CI, without a
    server, and names it."""
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


def test_every_event_is_decided_exactly_once_when_its_consumer_is_killed_mid_stream(
    pg_database: str, tmp_path: Path
) -> None:
    """``bench/bench_crash.py`` runs the same with 50 kills."""
    events = 300  # enough that three kills, each soon after a decision, all land mid-stream
    seed_world(pg_database, events)
    at_kill = crash_loop(pg_database, tmp_path, kills=3, events=events)
    assert len(at_kill) == 3 and all(0 < n < events for n in at_kill), at_kill  # killed mid-stream
    counts = decided(pg_database)
    assert len(counts) == events  # none lost
    assert set(counts.values()) == {1}  # none decided twice


def _post(client: httpx.Client, api: Api, fixes: list[dict[str, object]]) -> None:
    answer = post_fixes(client, api.url, fixes)
    assert answer.status_code == 200, answer.text


def test_a_zone_created_after_start_up_is_seen_by_every_api_process_within_a_second(
    pg_database: str, tmp_path: Path
) -> None:
    seed_world(pg_database, 60, zone=False)
    env = process_env(pg_database, tmp_path, GEOFENCE_SCHEDULER__SWEEP_EVERY_S="3600")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with api_processes(env, tmp_path, 2) as apis, httpx.Client() as client:
            zone = {"id": ZONE_ID, "name": "Store", "tags": ["restaurant"],
                    "circle": {"lat": STORE[0], "lng": STORE[1], "radius_m": 80}}
            assert client.post(f"{apis[0].url}/v1/zones", json=zone).status_code == 201
            time.sleep(1.0)
            at = datetime.now(UTC).isoformat()
            for i in range(60):
                fix = {"device_id": f"dev-{i}", "lat": STORE[0], "lng": STORE[1], "accuracy_m": 10.0,
                       "recorded_at": at}
                _post(client, apis[i % 2], [fix])
            enters = [e for e in events_of(pg_database) if e[2] == "enter"]
            assert len(enters) == 60
            deadline = time.monotonic() + 30  # and the worker decides each, once
            while len(decided(pg_database)) < 60 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert set(decided(pg_database).values()) == {1} and len(decided(pg_database)) == 60
    finally:
        stop(worker)


def test_fixes_alternating_between_api_processes_give_the_events_of_one_process(
    pg_database: str, tmp_path: Path
) -> None:
    """40 devices, 100 fixes each in 10 requests sent in order, alternating between two processes; for
    every fourth device some requests are also sent to both processes at once (a retry racing the
    original on the other process); for every fourth other device, two consecutive requests are in
    flight at once on the two processes: its events are those of one process applying them in one order
    or the other (the later-stamped one first makes the other's fixes late)."""
    seed_world(pg_database, 40, zone=False)
    seed_zones(pg_database)
    start = datetime.now(UTC) - timedelta(minutes=40)
    requests = {d: [walk(d, start)[k : k + 10] for k in range(0, 100, 10)] for d in range(40)}
    expected = events_of_one_process(tmp_path / "in-order", requests)
    assert {e[2] for e in expected} == {"enter", "dwell", "exit"}  # the tracks exercise every rule
    swapped = {d: r[:4] + [r[5], r[4]] + r[6:] if d % 4 == 2 else r for d, r in requests.items()}
    expected_swapped = events_of_one_process(tmp_path / "swapped", swapped)
    env = process_env(pg_database, tmp_path, GEOFENCE_SCHEDULER__SWEEP_EVERY_S="3600")
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        with api_processes(env, tmp_path, 2) as apis:

            def device(d: int) -> None:
                with httpx.Client() as client:
                    for k, body in enumerate(requests[d]):
                        if d % 4 == 2 and k in (4, 5):  # consecutive requests in flight at once
                            if k == 5:
                                continue
                            with httpx.Client() as other:
                                racing = [threading.Thread(target=_post, args=(c, api, b))
                                          for c, api, b in zip((client, other), apis, requests[d][4:6],
                                                               strict=True)]
                                for t in racing:
                                    t.start()
                                for t in racing:
                                    t.join()
                        elif d % 4 == 0 and k % 3 == 1:
                            with httpx.Client() as other:
                                racing = [threading.Thread(target=_post, args=(c, api, body))
                                          for c, api in zip((client, other), apis, strict=True)]
                                for t in racing:
                                    t.start()
                                for t in racing:
                                    t.join()
                        else:
                            _post(client, apis[(k + d) % 2], body)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(device, range(40)))
            got = events_of(pg_database)
            for d in range(40):
                mine = [e for e in got if e[0] == f"dev-{d}"]
                in_order = [e for e in expected if e[0] == f"dev-{d}"]
                if d % 4 == 2:
                    assert mine in (in_order, [e for e in expected_swapped if e[0] == f"dev-{d}"]), d
                else:
                    assert mine == in_order, d
    finally:
        stop(worker)
