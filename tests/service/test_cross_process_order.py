"""Across real API processes on PostgreSQL: a request that settled a device without a write on one
process, and the device's earlier request stepped on another afterwards, give the events of one process
taking them in their sending order (docs/presence.md, "One truth across processes")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from geofence.service.db import make_engine
from tests.geofence.tracks import offset
from tests.service.processes import STORE, api_processes, fresh_postgres, post_fixes, process_env, seed_world

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def at(north_m: float, t: datetime, device_id: str = "dev-0") -> dict[str, object]:
    lat, lng = offset(*STORE, north_m, 0.0)
    return {"device_id": device_id, "lat": lat, "lng": lng, "accuracy_m": 10, "recorded_at": iso(t)}


def test_an_earlier_request_after_a_later_steady_one_on_another_process_gives_the_sending_order(
    pg_url: str, tmp_path: Path
) -> None:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        seed_world(url, 2)  # dev-0, dev-1 and the store (80 m)
        with api_processes(process_env(url, tmp_path), tmp_path, 2) as (a, b), httpx.Client() as http:
            t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)

            def post(api, *fixes):
                answer = post_fixes(http, api.url, list(fixes))
                assert answer.status_code == 200, answer.text
                return [(e["kind"], e["at"]) for e in answer.json()["events"]]

            assert [k for k, _ in post(a, at(0, t0))] == ["enter"]
            assert post(b, at(0, t0 + timedelta(seconds=40))) == []  # steady at b: nothing written
            exited = post(a, at(200, t0 + timedelta(seconds=20)), at(250, t0 + timedelta(seconds=30)))
            assert [k for k, _ in exited] == ["exit"]
            post(b, at(0, t0, device_id="dev-1"))  # b's next batch reads a's write in the change feed
        engine = make_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT kind, at FROM zone_events WHERE device_id = 'dev-0' ORDER BY seq"
            )).all()
        engine.dispose()
    seconds = [(kind, round((when - t0).total_seconds())) for kind, when in rows]
    assert seconds == [("enter", 0), ("exit", 30), ("enter", 40)]
