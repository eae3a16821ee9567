"""Access-control benchmark: what authentication, rate limiting and log masking cost per request.

    .venv/bin/python bench/bench_security.py                      # SQLite file in a temp dir
    .venv/bin/python bench/bench_security.py --url postgresql+psycopg://postgres@127.0.0.1/bench

Figures printed:

- ``verify_api_key`` + ``verify_device_credential`` calls/s (one primary-key read each);
- HTTP requests/s through the real app (TestClient, one process) on a tiny ingest-scoped route:
  auth off, API key only, API key + device token — the difference is the per-request auth cost;
- the last HTTP row again with the key and device rate limits on: two bucket upserts in the database;
- ``MemoryRates.spend`` calls/s over 10,000 buckets;
- ``mask`` log lines/s on a line holding a phone number and an FCM token.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi import APIRouter, Depends
from fastapi.testclient import TestClient

from geofence.service import apikeys, clock
from geofence.service.app import create_app
from geofence.service.db import session_scope
from geofence.service.logging import mask
from geofence.service.rate_limits import MemoryRates
from geofence.service.security import Principal, require_scope
from geofence.service.settings import Settings
from geofence.service.tables.customers import Device

LINE = "sms to +33612345678 failed; token dXk3abcdefghij:APA91b" + "Hx7Kq-_Zr4" * 14 + " retry in 5 s"


def rate(label: str, n: int, func: Callable[[], object]) -> None:
    start = time.perf_counter()
    for _ in range(n):
        func()
    elapsed = time.perf_counter() - start
    print(f"{label:<48} {n / elapsed:>10,.0f} /s   {elapsed / n * 1e6:>8.1f} µs each")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", help="database URL (default: SQLite file in a temp dir)")
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    url = args.url or f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    limits = {"key_rate_per_s": 0, "device_rate_per_s": 0}  # measure auth, not refusals
    settings = Settings(env="local", database_url=url, scheduler={"enabled": False}, limits=limits,
                        log={"level": "WARNING"})  # fmt: skip
    probe = APIRouter()

    @probe.get("/bench/ingest")
    def _ingest(principal: Principal = Depends(require_scope("ingest"))) -> dict[str, str | None]:
        return {"device_id": principal.device_id}

    app = create_app(settings)
    app.include_router(probe)
    engine = app.state.runtime.engine
    with session_scope(engine) as s:
        _, key = apikeys.create_api_key(s, name="bench", scopes={"ingest"}, at=clock.now())
        if s.get(Device, "bench-device") is None:
            s.add(Device(id="bench-device"))
            s.flush()
        device_token = apikeys.issue_device_credential(s, "bench-device")

    print(f"database: {engine.dialect.name}")
    with session_scope(engine) as s:
        rate("verify_api_key", 5000, lambda: apikeys.verify_api_key(s, key, at=clock.now()))
        rate("verify_device_credential", 5000, lambda: apikeys.verify_device_credential(s, device_token))

    n = args.requests
    open_app = create_app(settings.model_copy(update={"auth_required": False}), engine=engine)
    open_app.include_router(probe)
    with TestClient(open_app) as client:
        rate("HTTP GET, auth off", n, lambda: client.get("/bench/ingest"))
    with TestClient(app) as client:
        headers = {"X-API-Key": key}
        bound = headers | {"X-Device-Token": device_token}
        assert client.get("/bench/ingest", headers=bound).json() == {"device_id": "bench-device"}
        rate("HTTP GET, API key", n, lambda: client.get("/bench/ingest", headers=headers))
        rate("HTTP GET, API key + device token", n, lambda: client.get("/bench/ingest", headers=bound))

    # the same requests with both rate limits on (never reached): one bucket upsert each, in the database
    unlimited = {"key_rate_per_s": 1e9, "key_burst": 10**9, "device_rate_per_s": 1e9, "device_burst": 10**9}
    limited_app = create_app(settings.model_copy(update={"limits": settings.limits.model_copy(
        update=unlimited)}), engine=engine)  # fmt: skip
    limited_app.include_router(probe)
    with TestClient(limited_app) as client:
        rate("HTTP GET, API key + device token, rates in DB", n,
             lambda: client.get("/bench/ingest", headers=bound))  # fmt: skip

    limiter = MemoryRates()
    names = [f"device:{i}" for i in range(10_000)]
    counter = iter(range(10**9))
    rate("MemoryRates.spend (10k buckets)", 100_000,
         lambda: limiter.spend(None, names[next(counter) % 10_000], now_s=1.0, rate_per_s=2.0,
                               burst=30))  # fmt: skip
    rate("logging.mask (phone + FCM token line)", 50_000, lambda: mask(LINE))
    engine.dispose()


if __name__ == "__main__":
    main()
