"""Text no database can store (NUL; lone surrogates) gets a 4xx with its reason everywhere, nothing is
stored, and on the location feed one client's bad request never fails another's (docs/api-errors.md)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from geofence.service.app import create_app
from geofence.service.db import make_engine
from geofence.service.tables.customers import Customer
from geofence.service.tables.zones import ZoneRow
from tests.conftest import _truncate_all
from tests.service.api_processes import api_processes

ZONE = {"name": "Store", "circle": {"lat": 48.85, "lng": 2.35, "radius_m": 100}}
NUL = "\u0000"

# (method, path, params, json body, raw body + content type)
REQUESTS = [
    ("post", "/v1/zones", None, {**ZONE, "name": f"Sto{NUL}re"}, None),
    ("post", "/v1/zones", None, {**ZONE, "id": f"z{NUL}"}, None),
    ("post", "/v1/zones", None, {**ZONE, "name": "lone \ud800 surrogate"}, None),
    ("post", "/v1/zones", None, {**ZONE, "metadata": {f"k{NUL}": 1}}, None),
    ("get", "/v1/zones/z%00", None, None, None),
    ("put", "/v1/zones/z%00", None, ZONE, None),
    ("delete", "/v1/zones/z%00", None, None, None),
    ("get", "/v1/zones", {"store_id": f"s{NUL}"}, None, None),
    ("get", "/v1/campaigns/c%00", None, None, None),
    ("get", "/v1/campaigns/c%00/stats", None, None, None),
    ("post", "/v1/campaigns/c%00/dry-run", None, {}, None),
    ("post", "/v1/campaigns/c/dry-run", None, {"events": [{"zone_id": f"z{NUL}"}]}, None),
    ("get", "/v1/deliveries", {"zone_id": f"z{NUL}"}, None, None),
    ("get", "/v1/deliveries", {"campaign_id": f"c{NUL}", "status": "sent"}, None, None),
    ("get", "/v1/customers/c%00/consents", None, None, None),
    ("post", "/v1/zones/import", {"format": "csv"}, None,
     (f"id,name,lat,lng,radius_m\na{NUL},A,48.85,2.35,50\nb,B,48.86,2.36,50\n", "text/csv")),
    ("post", "/v1/zones/import", {"format": "geojson"}, None, (json.dumps({
        "type": "FeatureCollection", "features": [{"type": "Feature", "id": f"g{NUL}", "properties": {
            "name": "G", "radius_m": 50}, "geometry": {"type": "Point", "coordinates": [2.35, 48.85]}}]}),
        "application/geo+json")),
    ("post", "/v1/customers/import", None, None,
     (f"crm_id,first_name\ncrm{NUL}1,Ann\ncrm2,Bob\n", "text/csv")),
    ("post", "/v1/customers", None, {"crm_id": f"crm{NUL}"}, None),
]


@pytest.fixture
def client(settings, engine):
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as c:
        yield c


def _count(engine, table) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize(("method", "path", "params", "body", "raw"), REQUESTS)
def test_unstorable_text_is_a_422_with_its_reason_and_nothing_is_stored(client, engine, method, path,
                                                                        params, body, raw):  # fmt: skip
    kwargs: dict[str, object] = {"params": params}
    if body is not None:
        kwargs["content"] = json.dumps(body).encode()  # json.dumps escapes NUL and surrogates as \u....
        kwargs["headers"] = {"content-type": "application/json"}
    if raw is not None:
        kwargs["content"], kwargs["headers"] = raw[0].encode("utf-8"), {"content-type": raw[1]}
    response = client.request(method.upper(), path, **kwargs)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "NUL" in detail or "surrogate" in detail
    assert _count(engine, ZoneRow.__table__) == 0 and _count(engine, Customer.__table__) == 0


def test_a_single_fix_with_a_nul_device_id_is_a_422_and_a_batch_rejects_only_that_fix(client):
    fix = {"lat": 48.85, "lng": 2.35, "accuracy_m": 10, "recorded_at": datetime.now(UTC).isoformat()}
    single = client.post("/v1/locations", json={**fix, "device_id": f"d{NUL}"})
    assert single.status_code == 422 and "NUL" in single.json()["detail"]
    batch = client.post("/v1/locations", json={"fixes": [{**fix, "device_id": f"d{NUL}"},
                                                         {**fix, "device_id": "ok"}]})  # fmt: skip
    assert batch.status_code == 200, batch.text
    first, second = batch.json()["results"]
    assert first["status"] == "rejected" and "NUL" in first["reason"]
    assert "NUL" not in (second["reason"] or "")


def test_deeply_nested_json_is_a_400_on_the_feed_as_elsewhere(client):
    nested = b"[" * 100_000
    for path in ("/v1/locations", "/v1/zones"):
        r = client.post(path, content=nested, headers={"content-type": "application/json"})
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
    deep = b'{"fixes": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"
    assert client.post("/v1/locations", content=deep).status_code in (400, 422)


@pytest.mark.postgres
def test_a_nul_in_one_request_never_fails_concurrent_valid_requests(pg_url, tmp_path):
    """On PostgreSQL with a real API process: 6 rounds of 40 valid requests and one with a NUL, at once."""
    env = {"GEOFENCE_DATABASE_URL": pg_url, "GEOFENCE_MIGRATE_ON_START": "false",
           "GEOFENCE_AUTH_REQUIRED": "false", "GEOFENCE_LOG__LEVEL": "WARNING"}  # fmt: skip
    now = datetime.now(UTC).isoformat()

    def body(device_id: str) -> dict[str, object]:
        return {"device_id": device_id, "lat": 48.85, "lng": 2.35, "accuracy_m": 10, "recorded_at": now}

    engine = make_engine(pg_url)
    try:
        _nul_rounds(env, tmp_path, body)
    finally:  # the session's shared database: leave it as the ``engine`` fixture would
        _truncate_all(engine)
        engine.dispose()


def _nul_rounds(env, tmp_path, body) -> None:
    with api_processes(1, env, tmp_path) as (url,):
        with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=64)) as http:
            for round_ in range(6):
                codes: dict[str, int] = {}
                barrier = threading.Barrier(41)

                def post(device_id: str, barrier=barrier, codes=codes) -> None:
                    barrier.wait()
                    codes[device_id] = http.post("/v1/locations", json=body(device_id)).status_code

                names = [f"r{round_}-d{i}" for i in range(40)] + [f"r{round_}-bad{NUL}"]
                threads = [threading.Thread(target=post, args=(n,)) for n in names]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                bad = codes.pop(names[-1])
                assert bad == 422
                assert set(codes.values()) == {200}, sorted(codes.values())
