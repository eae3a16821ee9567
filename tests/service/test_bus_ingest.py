"""The partitioned ingest (``GEOFENCE_BUS``) in one test process: the API publishes to the local NATS,
an ``IngestWorker`` on a thread ingests into PostgreSQL; the same scenarios give the embedded path's
events, with ids a replay of the stream gives again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.app import create_app
from geofence.service.bus.partitions import event_id_for, partition_of
from tests.service.bus_support import (
    Bus,
    drop_names,
    ingest_worker,
    own_names,
    require_nats,
    settings_for,
    wait_drained,
)
from tests.service.processes import (
    events_of,
    events_of_one_process,
    fresh_postgres,
    seed_world,
    seed_zones,
    walk,
)

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def bus() -> Iterator[Bus]:
    url = require_nats()
    config = own_names(partitions=4)
    yield Bus(url, config)
    drop_names(url, config)


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


def post_all(client: TestClient, requests: dict[int, list[list[dict[str, object]]]]) -> None:
    """Every device's requests in order; devices interleaved (request k of every device, then k + 1)."""
    for k in range(max(len(r) for r in requests.values())):
        for device_requests in requests.values():
            if k < len(device_requests):
                answer = client.post("/v1/locations", json={"fixes": device_requests[k]})
                assert answer.status_code == 200, answer.text


def scenario(devices: int, fixes: int) -> dict[int, list[list[dict[str, object]]]]:
    start = datetime.now(UTC) - timedelta(minutes=40)
    return {d: [walk(d, start, fixes=fixes)[k : k + 10] for k in range(0, fixes, 10)] for d in range(devices)}


def logged_events(database_url: str) -> list[ZoneEvent]:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, zone_id, device_id, kind, at, visit_id, reason FROM zone_events ORDER BY seq"
        )).all()
    engine.dispose()
    return [ZoneEvent(id=r[0], zone_id=r[1], device_id=r[2], kind=TransitionKind(r[3]), at=r[4],
                      visit_id=r[5], reason=r[6]) for r in rows]


def test_the_bus_gives_the_events_of_the_embedded_path_with_ids_a_replay_gives_again(
    bus: Bus, pg_database: str, pg_url: str, tmp_path: Path
) -> None:
    requests = scenario(30, 60)
    expected = events_of_one_process(tmp_path / "embedded", requests)
    assert {e[2] for e in expected} == {"enter", "dwell", "exit"}  # the tracks exercise every rule
    seed_world(pg_database, 30, zone=False)
    seed_zones(pg_database)
    settings = settings_for(tmp_path, pg_database, bus)
    with ingest_worker(settings), TestClient(create_app(settings)) as client:
        post_all(client, requests)
        wait_drained(bus.url, bus.config, pg_database)
    assert events_of(pg_database) == expected
    first = logged_events(pg_database)
    for event in first:  # ids name the transition: the same one always gets the same id
        assert event.id == event_id_for(event)
    visits = {e.visit_id for e in first if e.kind is TransitionKind.ENTER}
    assert {e.visit_id for e in first} == visits  # every dwell and exit belongs to an enter's visit

    # The whole stream again, into a database of its own, by another worker: the same ids.
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as again:
        seed_world(again, 30, zone=False)
        seed_zones(again)
        with ingest_worker(settings_for(tmp_path, again, bus)):
            wait_drained(bus.url, bus.config, again)
        replayed = logged_events(again)
    assert sorted(e.id for e in replayed) == sorted(e.id for e in first)


def test_a_retried_request_is_published_once_and_answered_like_the_embedded_path(
    bus: Bus, pg_database: str, tmp_path: Path
) -> None:
    seed_world(pg_database, 2, zone=False)
    seed_zones(pg_database)
    now = datetime.now(UTC)

    def fix(device: str, accuracy_m: float = 10, late_s: float = 0) -> dict[str, object]:
        at = (now - timedelta(seconds=late_s)).isoformat()
        return {"device_id": device, "lat": 48.8566, "lng": 2.3522, "accuracy_m": accuracy_m,
                "recorded_at": at}

    fixes = [fix("dev-0"), fix("dev-1", accuracy_m=900), fix("dev-1", late_s=-3600),
             fix("dev-1", late_s=3 * 86400), fix("dev-9")]
    with TestClient(create_app(settings_for(tmp_path, pg_database, None))) as embedded:
        expected = embedded.post("/v1/locations", json={"fixes": fixes}).json()
    settings = settings_for(tmp_path, pg_database, bus)
    with TestClient(create_app(settings)) as client:
        publisher = client.app.state.runtime.geofence.publisher  # type: ignore[attr-defined]
        first = client.post("/v1/locations", json={"fixes": fixes})
        again = client.post("/v1/locations", json={"fixes": fixes})
    assert first.status_code == again.status_code == 200
    assert first.json()["results"] == again.json()["results"] == expected["results"]
    statuses = [r["status"] for r in expected["results"]]
    assert statuses == ["accepted", "accepted", "rejected", "rejected", "rejected"]  # (too imprecise to
    # count, not to accept), from the future, stale, no location consent: the API's own rejections
    partitions = {partition_of(d, bus.config.partitions) for d in ("dev-0", "dev-1")}
    assert publisher.messages == 2 * len(partitions)  # one message per partition per request ...
    assert stream_messages(bus) == len(partitions)  # ... and the retry's are dropped by JetStream


def stream_messages(bus: Bus) -> int:
    import asyncio

    import nats

    async def count() -> int:
        nc = await nats.connect(bus.url)
        info = await nc.jetstream().stream_info(bus.config.stream)
        await nc.close()
        return int(info.state.messages)

    return asyncio.run(count())


def delete_consumers(bus: Bus) -> int:
    """Delete every consumer of the fix stream, as JetStream does to an inactive ephemeral one."""
    import asyncio

    import nats

    async def delete() -> int:
        nc = await nats.connect(bus.url)
        js = nc.jetstream()
        names = [c.name for c in await js.consumers_info(bus.config.stream)]
        for name in names:
            await js.delete_consumer(bus.config.stream, name)
        await nc.close()
        return len(names)

    return asyncio.run(delete())


def test_a_partition_whose_consumer_vanished_is_read_on_from_where_its_reader_was(
    bus: Bus, pg_database: str, tmp_path: Path
) -> None:
    requests = scenario(12, 40)
    expected = events_of_one_process(tmp_path / "embedded", requests)
    first = {d: r[:2] for d, r in requests.items()}
    rest = {d: r[2:] for d, r in requests.items()}
    seed_world(pg_database, 12, zone=False)
    seed_zones(pg_database)
    settings = settings_for(tmp_path, pg_database, bus)
    with ingest_worker(settings), TestClient(create_app(settings)) as client:
        post_all(client, first)
        wait_drained(bus.url, bus.config, pg_database)
        # JetStream drops an ephemeral consumer nobody pulled from for its inactive threshold (a reader
        # waiting on a committer that is behind); a fetch on it then only ever times out
        assert delete_consumers(bus) == bus.config.partitions
        post_all(client, rest)
        wait_drained(bus.url, bus.config, pg_database, timeout_s=30)
    assert events_of(pg_database) == expected
