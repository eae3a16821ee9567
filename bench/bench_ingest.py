"""Ingest benchmark: fixes/s in-process and over HTTP (uvicorn on 127.0.0.1), with p50/p99 latency.

    .venv/bin/python bench/bench_ingest.py                     # both parts, defaults below
    .venv/bin/python bench/bench_ingest.py --zones 10000 --devices 100000 --http-seconds 15 --workers 2

Workload ("sparse", like the foundation benchmark): 10,000 circle zones (40-200 m) spread over
Ile-de-France (~20,000 km2), 100,000 devices at random positions moving a few metres between fixes;
about 2 % of fixes fall in a zone. The database is a SQLite file (WAL); PostgreSQL with
``--database-url``. The consent gate is not registered (no customers exist in the benchmark database:
every fix would be dropped unprocessed), nor are the campaign subscribers unless --with-subscribers.

In-process: ``GeofenceService.ingest`` (checks, per-device screening, ``match_many``, one presence read per
batch, versioned writes of changed rows, events) on pre-built fixes, batches of ``--batch`` (1,000), and
the same including msgspec decoding of the JSON body as the route does.

HTTP: ``uvicorn --workers N`` with ``POST /v1/locations`` of 100-fix JSON bodies from ``--clients``
processes (persistent connections) for ``--http-seconds``; latency is per request, client side.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BOX = (48.10, 49.30, 1.40, 3.60)  # lat min/max, lng min/max: Ile-de-France, ~130 x 160 km


def make_zones(n: int, seed: int = 1) -> list:
    from zones.model import Circle, Zone

    rng = random.Random(seed)
    return [
        Zone(
            id=f"z{i}", name=f"store {i}",
            geometry=Circle(rng.uniform(BOX[0], BOX[1]), rng.uniform(BOX[2], BOX[3]), rng.uniform(40, 200)),
        )
        for i in range(n)
    ]


def seed_database(url: str, zones: list) -> None:
    from sqlmodel import Session

    from geofence.service.db import create_schema, make_engine
    from geofence.service.tables.zones import ZoneRow

    engine = make_engine(url)
    create_schema(engine)
    now = datetime.now(UTC)
    with Session(engine) as s:
        for z in zones:
            s.add(ZoneRow(id=z.id, name=z.name, data=z.to_dict(), created_at=now, updated_at=now))
        s.commit()
    engine.dispose()


def device_positions(n: int, seed: int = 2) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(rng.uniform(BOX[0], BOX[1]), rng.uniform(BOX[2], BOX[3])) for _ in range(n)]


def bench_in_process(
    url: str, n_devices: int, n_fixes: int, batch: int, subscribers: bool
) -> dict[str, float]:
    import msgspec

    from geofence.events import EventBus
    from geofence.fixes import LocationFix
    from geofence.service.routes.locations import decode_fixes
    from geofence.service.runtime import build_runtime
    from geofence.service.settings import Settings

    settings = Settings(database_url=url, scheduler={"enabled": False}, auth_required=False)
    t0 = time.perf_counter()
    runtime = build_runtime(settings)
    runtime.services.pop("location_consent_filter", None)
    if not subscribers:  # measure presence alone; campaign evaluation of events is downstream work
        runtime.bus = EventBus()
    service = runtime.services["geofence"]
    build_s = time.perf_counter() - t0
    positions = device_positions(n_devices)
    rng = random.Random(3)
    start = datetime.now(UTC) - timedelta(hours=2)
    fixes = []
    for k in range(n_fixes):
        d = k % n_devices
        lat, lng = positions[d]
        lat += rng.uniform(-3e-5, 3e-5)
        lng += rng.uniform(-4e-5, 4e-5)
        positions[d] = (lat, lng)
        t = start + timedelta(milliseconds=10 * k)
        fixes.append(LocationFix(f"dev{d}", lat, lng, rng.uniform(5, 40), t, client_fix_id=f"f{k}"))
    batches = [fixes[i : i + batch] for i in range(0, len(fixes), batch)]
    at = datetime.now(UTC)
    events = 0
    t0 = time.perf_counter()
    for b in batches:
        events += len(service.ingest(b, at=at).events)
    ingest_s = time.perf_counter() - t0

    # the same again (new times) from JSON bodies, decoding included
    enc = msgspec.json.Encoder()
    later = timedelta(minutes=60)
    bodies = [
        enc.encode({"fixes": [
            {"device_id": f.device_id, "lat": f.lat, "lng": f.lng, "accuracy_m": f.accuracy_m,
             "recorded_at": f.recorded_at + later, "client_fix_id": f"j{f.client_fix_id}"}
            for f in b
        ]})
        for b in batches
    ]
    t0 = time.perf_counter()
    for body in bodies:
        decoded, refused = decode_fixes(body, 1000)
        events += len(service.ingest(decoded, at=at, refused=refused).events)
    json_s = time.perf_counter() - t0
    return {
        "zones": len(service.index), "index_build_s": build_s, "fixes": n_fixes, "events": events,
        "ingest_fixes_per_s": n_fixes / ingest_s, "json_ingest_fixes_per_s": n_fixes / json_s,
    }


# -- HTTP ------------------------------------------------------------------------------------------
def bench_app():  # uvicorn --factory bench.bench_ingest:bench_app
    """The real app, without the consent gate (the benchmark database has no customers) and, unless
    BENCH_SUBSCRIBERS=1, without the campaign subscribers."""
    from geofence.events import EventBus
    from geofence.service.app import create_app

    app = create_app()
    runtime = app.state.runtime
    runtime.services.pop("location_consent_filter", None)
    if os.environ.get("BENCH_SUBSCRIBERS") != "1":
        runtime.bus = EventBus()
    return app


def _client(port: int, seconds: float, client_no: int, n_devices: int, out: mp.Queue) -> None:
    rng = random.Random(100 + client_no)
    devices = [f"c{client_no}d{i}" for i in range(n_devices)]
    pos = device_positions(n_devices, seed=10 + client_no)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    fixes_sent = 0
    errors = 0
    base = datetime.now(UTC) - timedelta(hours=1)
    k = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        parts = []
        stamp = (base + timedelta(milliseconds=k)).isoformat()
        for j in range(100):
            d = (k * 100 + j) % n_devices
            lat, lng = pos[d]
            parts.append(
                f'{{"device_id":"{devices[d]}","lat":{lat + rng.uniform(-3e-5, 3e-5):.6f},'
                f'"lng":{lng + rng.uniform(-4e-5, 4e-5):.6f},"accuracy_m":{rng.randint(5, 40)},'
                f'"recorded_at":"{stamp}","client_fix_id":"{k}-{j}"}}'
            )
        body = ('{"fixes":[' + ",".join(parts) + "]}").encode()
        k += 1
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/locations", body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies.append(time.perf_counter() - t0)
        if ok:
            fixes_sent += 100
        else:
            errors += 1
    out.put((fixes_sent, errors, latencies))


def bench_http(url: str, *, seconds: float, workers: int, clients: int, n_devices: int) -> dict[str, float]:
    port = 18765
    env = dict(os.environ, PYTHONPATH=str(ROOT), GEOFENCE_DATABASE_URL=url, GEOFENCE_AUTH_REQUIRED="false",
               GEOFENCE_SCHEDULER__ENABLED="false", GEOFENCE_LOG__LEVEL="WARNING")
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "bench.bench_ingest:bench_app",
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning", "--no-access-log"],
        env=env, cwd=ROOT, start_new_session=True,
    )
    try:
        for _ in range(3000):  # each worker builds its zone index first (minutes for 10,000 zones)
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                c.request("GET", "/openapi.json")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("uvicorn did not start")
        time.sleep(5.0 * workers)  # the first answer came from one worker; let the others finish too
        queue: mp.Queue = mp.Queue()
        procs = [mp.Process(target=_client, args=(port, seconds, i, n_devices // clients, queue))
                 for i in range(clients)]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        elapsed = time.perf_counter() - t0
        for p in procs:
            p.join()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    fixes = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    lat = sorted(x for r in results for x in r[2])
    return {
        "workers": workers, "clients": clients, "seconds": elapsed, "fixes": fixes, "errors": errors,
        "fixes_per_s": fixes / elapsed, "requests": len(lat),
        "p50_ms": 1000 * statistics.median(lat) if lat else math.nan,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else math.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--zones", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--fixes", type=int, default=300_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--http-seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--with-subscribers", action="store_true",
                        help="keep the campaign subscribers on the event bus (measures them too)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        zones = make_zones(args.zones)
        seed_database(url, zones)
        print(f"cpus={os.cpu_count()} zones={args.zones} devices={args.devices} db={url.split(':')[0]}")
        if args.with_subscribers:
            os.environ["BENCH_SUBSCRIBERS"] = "1"
        r = bench_in_process(url, args.devices, args.fixes, args.batch, args.with_subscribers)
        print(json.dumps({"in_process": {k: round(v, 2) for k, v in r.items()}}, indent=1))
        if not args.skip_http:
            h = bench_http(url, seconds=args.http_seconds, workers=args.workers,
                           clients=args.clients, n_devices=args.devices)
            print(json.dumps({"http": {k: round(v, 2) for k, v in h.items()}}, indent=1))


if __name__ == "__main__":
    main()
