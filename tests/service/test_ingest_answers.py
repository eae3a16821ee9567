"""A retried ``POST /v1/locations`` gets exactly its first answer (SQLite, PostgreSQL, real processes)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import func, select, update
from sqlmodel import Session

from geofence.service.app import create_app
from geofence.service.tables.answers import IngestAnswerRow
from geofence.service.tables.presence import ZoneEventRow
from tests.geofence.tracks import STORE, offset
from tests.service import processes
from tests.service.processes import api_processes, fresh_postgres, process_env, seed_world
from zones.model import Circle, Zone

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def body_fix(device_id: str = "dev-1", north_m: float = 0.0, t: datetime = NOW, **kw: object) -> dict:
    lat, lng = offset(*STORE, north_m, 0.0)
    return {"device_id": device_id, "lat": lat, "lng": lng, "accuracy_m": 10, "recorded_at": iso(t), **kw}


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    app = create_app(settings, engine=engine)
    app.state.runtime.geofence.location_consent = None  # every device may be located here
    with TestClient(app) as c:
        app.state.runtime.geofence.save_zones([Zone("store", "Store", Circle(*STORE, 60))], at=NOW)
        yield c


def answers(engine) -> int:
    with Session(engine) as s:
        return s.exec(select(func.count()).select_from(IngestAnswerRow)).scalar_one()


def test_a_retried_batch_gets_the_first_answer_per_fix(client, engine):
    """Two fixes sharing a client fix id, a bad one, another device's enter: the retries get the same
    results (accepted stays accepted, duplicate stays duplicate, rejected keeps its reason) and events,
    and store nothing more."""
    batch = {"fixes": [
        body_fix(t=NOW - timedelta(seconds=30), client_fix_id="x"),
        body_fix(t=NOW - timedelta(seconds=20), client_fix_id="x"),
        body_fix("dev-2", t=NOW - timedelta(seconds=10)),
        {**body_fix("dev-3"), "lat": 95.0},
    ]}
    with freeze_time(NOW):
        first = client.post("/v1/locations", json=batch)
    assert first.status_code == 200
    assert [r["status"] for r in first.json()["results"]] == ["accepted", "duplicate", "accepted", "rejected"]
    assert [e["kind"] for e in first.json()["events"]] == ["enter", "enter"]
    for late in (timedelta(seconds=5), timedelta(minutes=10)):
        with freeze_time(NOW + late):
            again = client.post("/v1/locations", json=batch)
        assert again.status_code == 200
        assert again.json() == first.json()
    assert answers(engine) == 1
    with Session(engine) as s:  # the retries fired nothing
        assert s.exec(select(func.count()).select_from(ZoneEventRow)).scalar_one() == 2


def test_an_answer_names_its_events_by_id_in_the_log_and_a_replay_leaves_out_erased_ones(
    client, engine
):
    """No copy of a position is kept with an answer; an erasure since (the events' device taken off)
    keeps the erased person's events out of a replayed answer."""
    batch = {"fixes": [body_fix(t=NOW - timedelta(seconds=20)),
                       body_fix("dev-2", t=NOW - timedelta(seconds=10))]}
    with freeze_time(NOW):
        first = client.post("/v1/locations", json=batch).json()
    assert [(e["device_id"], e["kind"]) for e in first["events"]] == [("dev-1", "enter"), ("dev-2", "enter")]
    with Session(engine) as s:
        stored = s.execute(select(IngestAnswerRow.events)).scalar_one()
        ids = s.execute(select(ZoneEventRow.id).order_by(ZoneEventRow.seq)).scalars().all()
    assert json.loads(stored) == list(ids)
    with freeze_time(NOW + timedelta(seconds=5)):
        assert client.post("/v1/locations", json=batch).json() == first  # the same bytes' worth
    with Session(engine) as s:
        s.exec(update(ZoneEventRow).where(ZoneEventRow.device_id == "dev-2").values(device_id=None))
        s.commit()
    with freeze_time(NOW + timedelta(seconds=10)):
        again = client.post("/v1/locations", json=batch).json()
    assert again == {**first, "events": first["events"][:1]}


def test_a_fix_rejected_for_its_age_stays_rejected_on_retry_and_a_new_body_is_a_new_request(client):
    old = {"fixes": [body_fix(t=NOW - timedelta(days=3))]}
    with freeze_time(NOW):
        first = client.post("/v1/locations", json=old).json()
    assert first["results"] == [{"status": "rejected", "reason": "recorded_at_too_old"}]
    with freeze_time(NOW):
        assert client.post("/v1/locations", json=old).json() == first
        other = client.post("/v1/locations", json={"fixes": [body_fix(t=NOW - timedelta(seconds=1))]})
    assert other.json()["results"] == [{"status": "accepted", "reason": None}]


def test_answers_are_purged_after_their_retention_and_a_later_retry_is_answered_afresh(client, engine):
    runtime = client.app.state.runtime
    batch = {"fixes": [body_fix(t=NOW - timedelta(seconds=5))]}
    with freeze_time(NOW):
        assert client.post("/v1/locations", json=batch).json()["results"][0]["status"] == "accepted"
    assert runtime.geofence.purge_answers(NOW + timedelta(minutes=14)) == 0
    assert runtime.geofence.purge_answers(NOW + timedelta(minutes=16)) == 1
    assert answers(engine) == 0
    with freeze_time(NOW + timedelta(minutes=16)):
        later = client.post("/v1/locations", json=batch).json()
    assert later["results"] == [{"status": "duplicate", "reason": None}]  # the fix itself was seen


@pytest.mark.postgres
@pytest.mark.slow
def test_a_retry_at_another_api_process_gets_the_first_answer(pg_url: str, tmp_path: Path):
    """Two real API processes on PostgreSQL: each batch posted to one, then retried at the other (and
    again at the first) gets the first answer, fix by fix."""
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        seed_world(url, 10)  # dev-0 .. dev-9, consenting, and the store
        env = process_env(url, tmp_path)
        with api_processes(env, tmp_path, 2) as (a, b), httpx.Client() as http:
            now = datetime.now(UTC)
            for k in range(5):
                lat, lng = processes.STORE
                fixes = [
                    {"device_id": f"dev-{k}", "lat": lat, "lng": lng, "accuracy_m": 10,
                     "recorded_at": iso(now - timedelta(seconds=60 - s)), "client_fix_id": "same"}
                    for s in (0, 10)
                ] + [{"device_id": f"dev-{k + 5}", "lat": 91.0, "lng": lng, "accuracy_m": 10,
                      "recorded_at": iso(now)}]
                first = http.post(f"{a.url}/v1/locations", json={"fixes": fixes}, timeout=30)
                assert first.status_code == 200, first.text
                assert [r["status"] for r in first.json()["results"]] == ["accepted", "duplicate", "rejected"]
                assert [e["kind"] for e in first.json()["events"]] == ["enter"]
                for api in (b, a):
                    again = http.post(f"{api.url}/v1/locations", json={"fixes": fixes}, timeout=30)
                    assert again.json() == first.json()


def test_with_no_retention_no_answer_is_kept_and_a_retry_is_answered_afresh(settings, engine):
    settings.ingest.answer_retention_s = 0
    app = create_app(settings, engine=engine)
    app.state.runtime.geofence.location_consent = None
    batch = {"fixes": [body_fix(t=NOW - timedelta(seconds=5))]}
    with TestClient(app) as c, freeze_time(NOW):
        app.state.runtime.geofence.save_zones([Zone("store", "Store", Circle(*STORE, 60))], at=NOW)
        assert c.post("/v1/locations", json=batch).json()["results"][0]["status"] == "accepted"
        assert c.post("/v1/locations", json=batch).json()["results"][0]["status"] == "duplicate"
    assert answers(engine) == 0
