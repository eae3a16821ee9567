"""CPU per ``POST /v1/locations`` request, in-process: the tree's own app driven over ASGI, one request at a
time, no sockets and no uvicorn.

    .venv/bin/python -m bench.bench_route_cpu                        # 20,000 devices, 1,000 timed requests
    .venv/bin/python -m bench.bench_route_cpu --profile /tmp/route.raw   # and py-spy over the timed phase
    BENCH_TREE=/other/checkout /other/checkout/.venv/bin/python bench/bench_route_cpu.py   # another commit

Why: the HTTP benchmark (``bench_ingest``) measures throughput with 2 server processes and 4 client
processes on 2 cores, so its figures move with whatever else the box runs, by 10-30 % between runs. This
one measures what a request costs the server, the whole route (body, decoding, the feed thread, the
ingest, the answer) and nothing else, on the CPU clock of its process: comparable between two checkouts
on a busy box, alternated. The workload is ``bench_ingest``'s sparse one (~8,700 zones, devices near
stores, ~10 zones per fix, 100-fix bodies as its clients make them): an untimed cold round (every
device's enters) and settling round, then ``--timed`` requests of the steady state. It prints CPU and
wall ms per request and what the timed answers held (fixes accepted, events by kind), which must be the
same for two checkouts compared. ``--profile`` records the timed phase with py-spy (raw stacks).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# the checkout measured: this one, or BENCH_TREE's (its app, its bench_ingest's workload and bench_app)
ROOT = Path(os.environ.get("BENCH_TREE") or Path(__file__).resolve().parents[1])
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import SPARSE_INTERVAL_S, make_workload, seed_database  # noqa: E402
from bench.pg_counters import backend_cpu_s  # noqa: E402


class Bodies:
    """100-fix bodies as ``bench_ingest``'s clients make them: every device in turn, moving a few metres.
    A copy of its client's ``body``, not an import: with ``BENCH_TREE``, ``bench.bench_ingest`` is the other
    checkout's, whose clients may make their bodies otherwise (or inside a closure, as ``1da5186``'s)."""

    def __init__(self, homes: list[tuple[float, float]], interval_s: float) -> None:
        self.pos, self.interval_s = list(homes), interval_s
        self.devices = [f"c0d{i}" for i in range(len(homes))]
        self.rng = random.Random(100)
        self.base = datetime.now(UTC) - timedelta(hours=1)
        self.k = 0

    def next(self) -> bytes:
        n, rng = len(self.pos), self.rng
        stamp = (self.base + timedelta(seconds=self.interval_s * (self.k * 100 // n))).isoformat()
        parts = []
        for j in range(100):
            d = (self.k * 100 + j) % n
            lat, lng = self.pos[d]
            lat, lng = lat + rng.uniform(-3e-5, 3e-5), lng + rng.uniform(-4e-5, 4e-5)
            self.pos[d] = (lat, lng)
            parts.append(f'{{"device_id":"{self.devices[d]}","lat":{lat:.6f},"lng":{lng:.6f},'
                         f'"accuracy_m":{rng.randint(5, 40)},"recorded_at":"{stamp}",'
                         f'"client_fix_id":"{self.k}-{j}"}}')
        self.k += 1
        return ('{"fixes":[' + ",".join(parts) + "]}").encode()


async def post(app: Any, body: bytes, seen: collections.Counter[str]) -> None:
    """One request through the ASGI app; its answer counted into ``seen``."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/v1/locations", "raw_path": b"/v1/locations", "query_string": b"", "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000),
    }
    given = False
    status: list[int] = []
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    if status != [200]:
        raise RuntimeError(f"HTTP {status}: {b''.join(chunks)[:300]!r}")
    answer = json.loads(b"".join(chunks))
    seen.update(e["kind"] for e in answer["events"])
    for key in ("accepted", "duplicates", "rejected"):
        seen[key] += answer[key]


def _callgrind(state: str) -> None:
    """Instrumentation on or off in the valgrind running this process; waits until valgrind has seen it
    (it polls its command file while the process runs)."""
    subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True,
                   stdout=subprocess.DEVNULL)


async def run(
    app: Any, bodies: Bodies, devices: int, timed: int, profile: str | None, callgrind: bool = False
) -> dict[str, Any]:
    seen: collections.Counter[str] = collections.Counter()
    async with app.router.lifespan_context(app):
        while bodies.k * 100 < 2 * devices:  # the cold and the settling rounds
            await post(app, bodies.next(), seen)
        prepared = [bodies.next() for _ in range(timed)]
        seen.clear()
        if profile:
            seconds = max(2, int(timed * 0.003))
            spy = ["py-spy", "record", "-p", str(os.getpid()), "-d", str(seconds), "-r", "250",
                   "-f", "raw", "-o", profile]
            subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            await asyncio.sleep(1.0)  # py-spy attaches
        url = os.environ["GEOFENCE_DATABASE_URL"]
        pg = url.startswith("postgresql")
        backends0 = backend_cpu_s(url)["cpu_s_backends"] if pg else 0.0
        prof = None
        if os.environ.get("BENCH_CPROFILE"):  # the feed thread's work (the ingest), deterministic counts
            import cProfile

            from geofence.service import location_feed
            prof = cProfile.Profile()
            serve = location_feed.LocationFeed.serve

            def profiled(self: Any, jobs: Any) -> None:
                prof.enable()
                try:
                    serve(self, jobs)
                finally:
                    prof.disable()
            location_feed.LocationFeed.serve = profiled
        if callgrind:  # run under ``valgrind --tool=callgrind --instr-atstart=no``: count the timed phase
            _callgrind("on")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for body in prepared:
            await post(app, body, seen)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        if callgrind:
            _callgrind("off")
        if prof is not None:
            prof.dump_stats(os.environ["BENCH_CPROFILE"])
        backends = backend_cpu_s(url)["cpu_s_backends"] - backends0 if pg else 0.0
    out = {"cpu_ms_per_request": round(1000 * cpu / timed, 3),
           "wall_ms_per_request": round(1000 * wall / timed, 3)}
    if pg:  # the database's share: what the same request costs its backends (``bench.pg_counters``)
        out["postgres_cpu_ms_per_request"] = round(1000 * backends / timed, 3)
    return {**out, "timed_answers": dict(sorted(seen.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--timed", type=int, default=1000, help="timed requests (100 fixes each)")
    parser.add_argument("--profile", default=None, help="py-spy raw output file for the timed phase")
    parser.add_argument("--callgrind", action="store_true",
                        help="under valgrind --tool=callgrind --instr-atstart=no: instructions of the timed "
                             "phase only (repeatable whatever else the box runs)")
    parser.add_argument("--database-url", default=None,
                        help="PostgreSQL (a fresh database): its backends' CPU a request is reported too")
    args = parser.parse_args()
    workload = make_workload("sparse", 10_000, args.devices, SPARSE_INTERVAL_S)
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/bench.db"
        seed_database(url, workload.zones)
        os.environ.update(GEOFENCE_DATABASE_URL=url, GEOFENCE_AUTH_REQUIRED="false",
                          GEOFENCE_SCHEDULER__ENABLED="false", GEOFENCE_LOG__LEVEL="WARNING")
        from bench.bench_ingest import bench_app  # the app as the HTTP benchmark serves it

        result = asyncio.run(run(bench_app(), Bodies(workload.homes, workload.interval_s), args.devices,
                                 args.timed, args.profile, args.callgrind))
    print(json.dumps({"tree": str(ROOT), "devices": args.devices, "timed_requests": args.timed, **result,
                      "loadavg": Path("/proc/loadavg").read_text().split()[:3]}))


if __name__ == "__main__":
    main()
