"""Rate limits hold across processes (buckets in the database), and failed key checks are limited."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlmodel import select

from geofence.service import apikeys, clock
from geofence.service.app import create_app
from geofence.service.db import create_schema, make_engine, session_scope
from geofence.service.rate_limits import DatabaseRates, gcra, purge_full_buckets
from geofence.service.tables.limits import RateLimitRow
from tests.conftest import _truncate_all, make_key_headers
from tests.service.api_processes import api_processes


@given(
    gaps=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=1, max_size=40),
    rate=st.sampled_from([0.5, 2.0, 10.0]),
    burst=st.integers(min_value=1, max_value=8),
)
@settings(max_examples=25, deadline=None)
def test_the_sql_bucket_decides_as_the_python_one(sqlite_engine_module, gaps, rate, burst):
    """``DatabaseRates`` (one upsert) and ``gcra`` (the readable reference) agree, request by request."""
    with session_scope(sqlite_engine_module) as s:
        s.execute(delete(RateLimitRow))
    store, tat, now = DatabaseRates(), None, 1_000_000.0
    for gap in gaps:
        now += gap
        tat, expected = gcra(tat, now_s=now, rate_per_s=rate, burst=burst)
        with session_scope(sqlite_engine_module) as s:
            got = store.spend(s.connection(), "k", now_s=now, rate_per_s=rate, burst=burst)
        assert (got > 0) == (expected > 0)
        assert got == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module")
def sqlite_engine_module(tmp_path_factory):
    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('rates')}/rates.db")
    create_schema(eng)
    yield eng
    eng.dispose()


def test_refilled_buckets_are_purged(engine):
    store = DatabaseRates()
    with session_scope(engine) as s:
        store.spend(s.connection(), "old", now_s=100.0, rate_per_s=1.0, burst=5)
        store.spend(s.connection(), "busy", now_s=100.0, rate_per_s=0.01, burst=1)
    with session_scope(engine) as s:
        assert purge_full_buckets(s.connection(), now_s=102.0) == 1
        assert [r.name for r in s.exec(select(RateLimitRow)).all()] == ["busy"]


def _app(settings, **limits):
    return create_app(settings.model_copy(update={"limits": settings.limits.model_copy(update=limits)}))


def test_failed_key_checks_are_limited_per_client_address(secure_settings):
    app = _app(secure_settings, failed_auth_rate_per_s=0.01, failed_auth_burst=5)
    good = make_key_headers(app.state.runtime.engine, "admin")
    with TestClient(app, client=("203.0.113.7", 4000)) as attacker:
        codes = [attacker.get("/v1/zones", headers={"X-API-Key": f"gfk_guess{i}"}).status_code
                 for i in range(20)]  # fmt: skip
        assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}
        limited = attacker.get("/v1/zones")  # no key at all counts too
        assert limited.status_code == 429 and 90 <= int(limited.headers["retry-after"]) <= 100
        assert "client address" in limited.json()["detail"]
        # while its budget is spent, this address is refused without a database read, key or not
        assert attacker.get("/v1/zones", headers=good).status_code == 429
    with TestClient(app, client=("198.51.100.9", 4000)) as other:
        assert other.get("/v1/zones", headers=good).status_code == 200
        assert other.get("/v1/zones", headers={"X-API-Key": "gfk_x"}).status_code == 401


def test_failed_checks_of_one_key_id_are_limited_without_locking_out_its_holder(secure_settings):
    app = _app(secure_settings, failed_auth_rate_per_s=0.01, failed_auth_burst=3)
    with session_scope(app.state.runtime.engine) as s:
        info, token = apikeys.create_api_key(s, name="app", scopes={"admin"}, at=clock.now())
    wrong = f"gfk_{info.id}_{'0' * 64}"
    codes = []
    for i in range(8):  # from eight addresses: only the key id's budget applies
        with TestClient(app, client=(f"192.0.2.{i}", 4000)) as client:
            codes.append(client.get("/v1/zones", headers={"X-API-Key": wrong}).status_code)
    assert codes[:3] == [401] * 3 and set(codes[3:]) == {429}
    with TestClient(app, client=("192.0.2.200", 4000)) as holder:
        assert holder.get("/v1/zones", headers={"X-API-Key": token}).status_code == 200


def _hammer(
    urls: list[str], headers: dict[str, str], duration_s: float, *, min_requests: int, cap_s: float
) -> tuple[list[int], float]:
    """Requests from 4 threads per process for ``duration_s``, and on until ``min_requests`` were answered
    (a loaded machine answers slowly: the key's budget must still be outrun) or ``cap_s``; returns the
    codes and the elapsed time. A transport error is recorded as code 0 (the thread's count is kept)."""
    codes: list[int] = []
    lock = threading.Lock()
    started = time.monotonic()

    def going() -> bool:
        elapsed = time.monotonic() - started
        return elapsed < duration_s or (len(codes) < min_requests and elapsed < cap_s)

    def worker(url: str) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            while going():
                try:
                    status = client.get("/v1/zones", params={"limit": 1}).status_code
                except httpx.TransportError:
                    status = 0
                with lock:
                    codes.append(status)

    threads = [threading.Thread(target=worker, args=(url,)) for url in urls for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return codes, time.monotonic() - started


@pytest.mark.postgres
def test_a_key_limit_holds_across_api_processes(pg_url, tmp_path):
    """Two ``geofence serve`` processes on PostgreSQL share a key's 10/s (burst 20) budget."""
    engine = make_engine(pg_url)
    headers = make_key_headers(engine, "admin", name="limited")
    env = {
        "GEOFENCE_DATABASE_URL": pg_url, "GEOFENCE_MIGRATE_ON_START": "false",
        "GEOFENCE_LIMITS__KEY_RATE_PER_S": "10", "GEOFENCE_LIMITS__KEY_BURST": "20",
        "GEOFENCE_LOG__LEVEL": "WARNING",
    }  # fmt: skip
    try:
        with api_processes(2, env, tmp_path) as urls:
            codes, elapsed_s = _hammer(urls, headers, duration_s=2.0, min_requests=150, cap_s=20.0)
    finally:  # the session's shared database: leave it as the ``engine`` fixture would
        _truncate_all(engine)
        engine.dispose()
    allowed = codes.count(200)
    assert set(codes) <= {200, 429}, codes.count(0)  # 0: a transport error
    assert len(codes) >= 150 and codes.count(429) > 0
    # one shared bucket: the burst plus the rate over the run (per process, it would be twice that)
    assert 20 <= allowed <= 20 + 10 * elapsed_s + 2, (allowed, elapsed_s, len(codes))
