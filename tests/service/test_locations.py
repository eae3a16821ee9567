"""POST /v1/locations through the real app, database (SQLite and PostgreSQL) and zone index."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlmodel import Session

from geofence.service.app import create_app
from geofence.service.tables._types import as_utc
from geofence.service.tables.presence import PresenceHeadRow, PresenceRow, ZoneEventRow
from tests.geofence.tracks import STORE, offset
from zones.model import Circle, Zone

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def body_fix(device_id="dev-1", north_m=0.0, east_m=0.0, t=NOW, **kw):
    lat, lng = offset(*STORE, north_m, east_m)
    return {"device_id": device_id, "lat": lat, "lng": lng, "accuracy_m": 10, "recorded_at": iso(t), **kw}


@pytest.fixture
def app(settings, engine):
    app = create_app(settings, engine=engine)
    # the consent domain's gate, registered as a service: here every device but "no-consent" consented
    app.state.runtime.geofence.location_consent = lambda _s, ids: {d for d in ids if d != "no-consent"}
    return app


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:
        store = Zone("store", "Store", Circle(*STORE, 60))
        app.state.runtime.geofence.save_zones([store], at=NOW)
        yield c


def post(client, payload):
    return client.post("/v1/locations", json=payload)


def test_one_fix_enters_and_the_event_is_persisted_and_published(client, app, engine):
    received = []
    app.state.runtime.bus.subscribe(received.extend)
    with freeze_time(NOW):
        r = post(client, body_fix())
    assert r.status_code == 200
    out = r.json()
    assert out["accepted"] == 1 and out["results"] == [{"status": "accepted", "reason": None}]
    assert [e["kind"] for e in out["events"]] == ["enter"]
    assert [e.kind.value for e in received] == ["enter"]
    with Session(engine) as s:
        row = s.exec(select(ZoneEventRow)).scalars().one()
        assert (row.zone_id, row.device_id, row.reason) == ("store", "dev-1", "inside")


def test_a_batch_reports_per_fix_and_bad_fixes_do_not_reject_good_ones(client):
    fixes = [
        body_fix(t=NOW - timedelta(seconds=30), client_fix_id="a"),
        {"device_id": "dev-2", "lat": "north", "lng": 2.0, "accuracy_m": 5, "recorded_at": iso(NOW)},
        body_fix("dev-3", t=NOW.replace(tzinfo=None)),  # naive
        body_fix("dev-4", t=NOW + timedelta(hours=1)),
        body_fix("no-consent"),
        body_fix(t=NOW - timedelta(seconds=30), client_fix_id="a"),  # duplicate
        body_fix("dev-5", accuracy_m=0),
        {"lat": 1},
    ]
    fixes[2]["recorded_at"] = NOW.replace(tzinfo=None).isoformat()
    with freeze_time(NOW):
        r = post(client, {"fixes": fixes})
    assert r.status_code == 200
    results = r.json()["results"]
    assert [x["status"] for x in results] == [
        "accepted", "rejected", "rejected", "rejected", "rejected", "duplicate", "rejected", "rejected"]
    assert results[1]["reason"].startswith("invalid: Expected `float`")
    assert [x["reason"] for x in results[2:5]] == ["recorded_at_naive", "recorded_at_in_future",
                                                    "no_location_consent"]
    assert results[6]["reason"] == "accuracy_invalid"
    assert "device_id" in results[7]["reason"]


@pytest.mark.parametrize(
    ("raw", "status"),
    [(b"{not json", 422), (b"[]", 200), (b'"text"', 422), (b'{"fixes": 3}', 422), (b"", 422),
     (b'{"device_id": "d", "lat": 1}', 422), (b"\xff\xfe", 422), (b'{"fixes": [1, null, "x"]}', 200)],
)
def test_malformed_bodies_are_422_never_500(client, raw, status):
    with freeze_time(NOW):
        r = client.post("/v1/locations", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["detail"]


def test_oversized_batch_and_body_are_413(client, settings):
    one = body_fix()
    r = post(client, {"fixes": [one] * (settings.ingest.max_batch + 1)})
    assert r.status_code == 413
    big = b'{"fixes": [' + b" " * (settings.ingest.max_body_bytes + 10) + b"]}"
    r = client.post("/v1/locations", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_out_of_order_fix_is_rejected_and_presence_does_not_move(client, engine):
    with freeze_time(NOW):
        post(client, {"fixes": [body_fix(t=NOW - timedelta(seconds=s)) for s in (60, 30)]})
        r = post(client, body_fix(east_m=2000, t=NOW - timedelta(seconds=45)))
    assert r.json()["results"] == [{"status": "rejected", "reason": "out_of_order"}]
    with Session(engine) as s:
        assert s.exec(select(PresenceRow)).scalars().one().state == "inside"


def test_deleting_a_zone_closes_open_visits(client, engine):
    with freeze_time(NOW):
        post(client, body_fix())
        assert client.app.state.runtime.geofence.delete_zone("store", at=NOW)
    with Session(engine) as s:
        kinds = [(e.kind, e.reason) for e in s.exec(select(ZoneEventRow).order_by(ZoneEventRow.at)).scalars()]
        assert kinds == [("enter", "inside"), ("exit", "zone_removed")]
        assert s.exec(select(PresenceRow)).scalars().all() == []  # closed: deleted
        head = s.exec(select(PresenceHeadRow)).scalars().one()  # bumped: every cached copy is stale
        assert head.version == 2


def test_zone_created_around_a_device_already_inside_fires_no_enter(client):
    with freeze_time(NOW):
        r = post(client, body_fix(north_m=3000))
        assert r.json()["events"] == []
        lat, lng = offset(*STORE, 3000, 0)
        service = client.app.state.runtime.geofence
        service.save_zones([Zone("new", "New", Circle(lat, lng, 80))], at=NOW)
        r = post(client, body_fix(north_m=3000, t=NOW + timedelta(seconds=30)))
    assert r.json()["events"] == []


def test_sweep_job_fires_dwell_and_silence_exit_on_the_clock(client, app, engine):
    from geofence.service.wiring.geofence import sweep_job

    with freeze_time(NOW) as frozen:
        post(client, body_fix())
        frozen.tick(timedelta(minutes=1))
        post(client, body_fix(t=NOW + timedelta(minutes=1)))  # seen again a minute later: it stays
        frozen.tick(timedelta(minutes=5))
        sweep_job(app.state.runtime)
        frozen.tick(timedelta(minutes=40))
        sweep_job(app.state.runtime)
    with Session(engine) as s:
        kinds = [(e.kind, e.reason) for e in s.exec(select(ZoneEventRow).order_by(ZoneEventRow.at)).scalars()]
    assert kinds == [("enter", "inside"), ("dwell", "dwell_timer"), ("exit", "inferred_silence")]


def test_the_silence_exit_counts_from_the_heads_last_fix_not_the_rows(client, app, engine):
    """A device standing still writes no presence row after its enter, only its head once a heartbeat:
    the sweep must not take the row's time for its last fix."""
    from geofence.service.wiring.geofence import sweep_job

    with freeze_time(NOW) as frozen:
        for s in range(0, 121, 20):
            post(client, body_fix(t=NOW + timedelta(seconds=s)))
        frozen.tick(timedelta(seconds=1800 + 30))  # 30 min after the enter, but not after the last fix
        sweep_job(app.state.runtime)
        frozen.tick(timedelta(seconds=120))
        sweep_job(app.state.runtime)
    with Session(engine) as s:
        rows = s.exec(select(ZoneEventRow).order_by(ZoneEventRow.at)).scalars()
        events = [(e.kind, e.reason, as_utc(e.at)) for e in rows]
    assert [k for k, _, _ in events] == ["enter", "dwell", "exit"]
    # the head was written at 120 s: the silence exit is due 1,800 s after that
    assert events[-1][1:] == ("inferred_silence", NOW + timedelta(seconds=120 + 1800))


def test_device_bound_caller_may_post_only_for_its_device(settings, engine):
    from geofence.service.security import Principal

    app = create_app(settings.model_copy(update={"auth_required": True}), engine=engine)
    runtime = app.state.runtime
    runtime.authenticate = lambda _req, _scope: Principal("k", frozenset({"ingest"}), "dev-1")
    runtime.geofence.location_consent = None
    with TestClient(app) as c, freeze_time(NOW):
        r = c.post("/v1/locations", json={"fixes": [body_fix("dev-1"), body_fix("dev-2")]})
    assert [x["reason"] for x in r.json()["results"]] == [None, "device_not_allowed"]


def test_openapi_documents_single_fix_and_batch(client):
    schema = client.get("/openapi.json").json()["paths"]["/v1/locations"]["post"]
    body = schema["requestBody"]["content"]["application/json"]["schema"]["oneOf"]
    assert body[0]["properties"]["recorded_at"]["format"] == "date-time"
    assert body[1]["properties"]["fixes"]["maxItems"] == 1000
    assert "200" in schema["responses"]
