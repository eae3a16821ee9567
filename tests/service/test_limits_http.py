"""Abuse limits: body size (413, also chunked) and per-key / per-device request rates (429)."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, Depends, Request
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from geofence.service import apikeys, clock
from geofence.service.app import create_app
from geofence.service.db import session_scope
from geofence.service.rate_limits import MemoryRates, gcra
from geofence.service.security import Principal, require_scope
from geofence.service.tables.customers import Device

probe = APIRouter()


@probe.post("/probe/echo")
async def _echo(request: Request) -> dict[str, int]:
    return {"received": len(await request.body())}


@probe.post("/probe/json")
def _json(payload: dict[str, str]) -> dict[str, int]:
    return {"keys": len(payload)}


@probe.get("/probe/ingest")
def _ingest(principal: Principal = Depends(require_scope("ingest"))) -> dict[str, str | None]:
    return {"device_id": principal.device_id}


def _app(settings, **limits):
    settings = settings.model_copy(
        update={
            "ingest": settings.ingest.model_copy(update={"max_body_bytes": 1000}),
            "limits": settings.limits.model_copy(update=limits),
        }
    )
    app = create_app(settings)
    app.include_router(probe)
    return app


def test_body_over_the_limit_by_content_length_gets_413_with_a_reason(settings):
    with TestClient(_app(settings)) as client:
        assert client.post("/probe/echo", content=b"x" * 1000).json() == {"received": 1000}
        r = client.post("/probe/echo", content=b"x" * 1001)
        assert r.status_code == 413
        assert "1000 bytes" in r.json()["detail"]


def test_chunked_body_over_the_limit_gets_413_while_streaming(settings):
    def chunks():
        for _ in range(20):
            yield b"y" * 100

    with TestClient(_app(settings)) as client:
        r = client.post("/probe/echo", content=chunks())
        assert r.status_code == 413
        r = client.post("/probe/json", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        small = client.post("/probe/echo", content=iter([b"a" * 400, b"b" * 400]))
        assert small.json() == {"received": 800}


def test_bad_content_length_is_a_400(settings):
    with TestClient(_app(settings)) as client:
        r = client.post("/probe/echo", content=b"x", headers={"content-length": "nope"})
        assert r.status_code == 400


def test_bucket_allows_the_burst_then_refills_at_the_rate():
    tat = None
    for _ in range(3):
        tat, wait = gcra(tat, now_s=100.0, rate_per_s=2.0, burst=3)
        assert wait == 0
    tat, wait = gcra(tat, now_s=100.0, rate_per_s=2.0, burst=3)
    assert wait == pytest.approx(0.5)
    tat, wait = gcra(tat, now_s=100.5, rate_per_s=2.0, burst=3)
    assert wait == 0
    tat, _ = gcra(0.0, now_s=1e6, rate_per_s=2.0, burst=3)
    for _ in range(2):  # refilled up to the burst only: 3 in all, the first just spent
        tat, wait = gcra(tat, now_s=1e6, rate_per_s=2.0, burst=3)
        assert wait == 0
    assert gcra(tat, now_s=1e6, rate_per_s=2.0, burst=3)[1] > 0


@given(
    times=st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), min_size=1, max_size=60),
    rate=st.floats(min_value=0.01, max_value=100),
    burst=st.integers(min_value=1, max_value=20),
)
def test_bucket_never_allows_more_than_burst_plus_rate_times_elapsed(times, rate, burst):
    times = sorted(times)
    tat, allowed = None, 0
    for t in times:
        tat, wait = gcra(tat, now_s=t, rate_per_s=rate, burst=burst)
        assert wait >= 0
        allowed += wait == 0
    assert allowed <= burst + rate * (times[-1] - times[0]) + 1e-6


def test_limiter_disabled_by_zero_rate_and_buckets_are_bounded():
    limiter = MemoryRates(max_buckets=2)
    assert all(limiter.spend(None, "k", now_s=1.0, rate_per_s=0, burst=1) == 0 for _ in range(10))
    for name in ("a", "b", "c"):
        limiter.spend(None, name, now_s=1.0, rate_per_s=1, burst=1)
    assert len(limiter._tats) == 2


# No freezegun over HTTP here: FastAPI >= 0.16x builds route models lazily at the first request, and
# under freeze_time a `datetime` annotation resolves to FakeDatetime. Refill is covered by the pure
# bucket tests above; these use rates slow enough that no token comes back during the test.


def test_per_key_rate_limit_answers_429_with_retry_after(secure_settings):
    app = _app(secure_settings, key_rate_per_s=0.01, key_burst=2)
    with session_scope(app.state.runtime.engine) as s:
        _, token = apikeys.create_api_key(s, name="app", scopes={"ingest"}, at=clock.now())
        _, other = apikeys.create_api_key(s, name="other", scopes={"ingest"}, at=clock.now())
    headers = {"X-API-Key": token}
    with TestClient(app) as client:
        assert [client.get("/probe/ingest", headers=headers).status_code for _ in range(2)] == [200, 200]
        r = client.get("/probe/ingest", headers=headers)
        assert r.status_code == 429
        assert 90 <= int(r.headers["retry-after"]) <= 100  # (1 token) / (0.01 per s), rounded up
        assert "API key" in r.json()["detail"]
        assert client.get("/probe/ingest", headers={"X-API-Key": other}).status_code == 200


def test_per_device_rate_limit_is_separate_for_each_device(secure_settings):
    app = _app(secure_settings, device_rate_per_s=0.1, device_burst=1)
    with session_scope(app.state.runtime.engine) as s:
        _, token = apikeys.create_api_key(s, name="app", scopes={"ingest"}, at=clock.now())
        s.add_all([Device(id="a"), Device(id="b")])
        s.flush()
        tokens = {d: apikeys.issue_device_credential(s, d) for d in ("a", "b")}
    with TestClient(app) as client:
        def get(device):
            return client.get("/probe/ingest", headers={"X-API-Key": token, "X-Device-Token": tokens[device]})

        assert get("a").status_code == 200
        limited = get("a")
        assert limited.status_code == 429 and 9 <= int(limited.headers["retry-after"]) <= 10
        assert "device" in limited.json()["detail"]
        assert get("b").status_code == 200
