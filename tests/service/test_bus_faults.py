"""The bus going away and coming back, on a ``nats-server`` of the test's own (``kill -9``, restarted on
the same port and store): the API answers 503 with Retry-After, never 500 and never a false "accepted";
acknowledged fixes survive the restart and are ingested once it is back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from geofence.service.app import create_app
from tests.service.bus_support import (
    Bus,
    ingest_worker,
    own_names,
    own_nats_server,
    require_nats_server,
    settings_for,
    wait_drained,
)
from tests.service.processes import events_of, fresh_postgres, seed_world, seed_zones, walk

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


def test_a_dead_broker_gives_503_and_acknowledged_fixes_survive_its_restart(
    pg_database: str, tmp_path: Path
) -> None:
    require_nats_server()
    seed_world(pg_database, 4, zone=False)
    seed_zones(pg_database)
    start = datetime.now(UTC) - timedelta(minutes=30)
    tracks = {d: walk(d, start, fixes=40) for d in range(4)}
    before = {"fixes": [f for d in tracks for f in tracks[d][:20]]}
    after = {"fixes": [f for d in tracks for f in tracks[d][20:]]}
    with own_nats_server(tmp_path) as server:
        config = own_names(partitions=2).model_copy(update={"publish_timeout_s": 1.0})
        bus = Bus(server.url, config)
        settings = settings_for(tmp_path, pg_database, bus)
        with TestClient(create_app(settings)) as client:
            first = client.post("/v1/locations", json=before)
            assert first.status_code == 200
            server.kill()
            down = client.post("/v1/locations", json=after)
            assert down.status_code == 503, down.text
            assert down.headers["retry-after"] == "1"
            server.start()  # same port, same store: the stream and its first message are still there
            deadline = time.monotonic() + 20
            while True:  # the client reconnects on its own; the device retries until acknowledged
                again = client.post("/v1/locations", json=after)
                if again.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert again.status_code == 200, again.text
        with ingest_worker(settings):
            wait_drained(server.url, config, pg_database)
    kinds = {e[2] for e in events_of(pg_database)}
    assert "enter" in kinds and "exit" in kinds  # fixes from before and after the restart were ingested
