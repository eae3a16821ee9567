"""Ingest benchmark: fixes/s in-process and over HTTP (uvicorn on 127.0.0.1), with p50/p99 latency.

    .venv/bin/python bench/bench_ingest.py                     # sparse workload, both parts
    .venv/bin/python bench/bench_ingest.py --workload both     # sparse, then spread
    .venv/bin/python bench/bench_ingest.py --workload spread --zones 10000 --devices 100000 --workers 2

Workloads (``--workload``):

* ``sparse`` (default; the issue's goal workload): the zones of the foundation benchmark's sparse
  workload (``bench.bench_zones.workload``: 8,000 walking zones, 200 rural driving zones, 500 polygons,
  stores clustered in towns over Ile-de-France, ~8,700 zones) and 100,000 devices, each placed near a
  random store (Gaussian, sigma 300 m, as ``bench.bench_zones.fixes``) and then moving a few metres between
  fixes, one fix every ``--fix-interval-s`` (5 s) of fix time: ~10 zones per fix. The first fix of each
  device enters its ~10 zones (the *cold round*, reported apart); the following rounds are the steady
  state (devices staying where they are).
* ``spread`` (the earlier, easier one): ``--zones`` (10,000) circle zones (40-200 m) spread uniformly over
  Ile-de-France (~20,000 km2), devices at uniform random positions moving a few metres between fixes;
  about 2 % of fixes fall in a zone.

The database is a SQLite file (WAL); PostgreSQL with ``--database-url``. The consent gate is not
registered (no customers exist in the benchmark database: every fix would be dropped unprocessed), nor
are the campaign subscribers unless --with-subscribers.

In-process: ``GeofenceService.ingest`` (checks, per-device screening, ``match_many``, one change-feed read
per batch, busy devices from the presence cache, versioned writes of what changed, events) on pre-built
fixes, batches of ``--batch`` (1,000), round after round of every device (``--rounds``; each round's fixes
are made untimed before it), then ``--fixes`` more including msgspec decoding of the JSON body as the
route does. Rates are given per second of wall time and per second of CPU time of the process (``*_cpu``:
less sensitive to other jobs on the box), and per round (``round_N``: round 1 is the settling round).
``steady_fixes_per_s`` is over rounds 2-13, one heartbeat (60 s) of fix time at one fix per 5 s: every
device's head is rewritten once in it, and in the benchmark all in the same round (every device entered
at the same fix time), which then runs at about half the others' rate; a figure over fewer rounds
would leave those writes out.

HTTP: ``uvicorn --workers N`` with ``POST /v1/locations`` (the lean handler and its feed thread, see
docs/presence.md) of 100-fix JSON bodies from ``--clients`` processes (persistent connections) for
``--http-seconds``; latency is per request, client side. In the
sparse workload each client first posts two untimed rounds, reported apart: its devices' cold round and
the settling round (the first fix after the enters: pending enters confirmed, and each worker reads
every device once, since a device's requests land on either worker), then the timed steady rounds.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import pg_counters  # noqa: E402  (after the path: run as a script too)

BOX = (48.10, 49.30, 1.40, 3.60)  # lat min/max, lng min/max: Ile-de-France, ~130 x 160 km
SPARSE_INTERVAL_S = 5.0  # walking pace: a few metres between fixes


@dataclass
class Workload:
    name: str
    zones: list
    homes: list[tuple[float, float]]  # (lat, lng) of each device's first fix
    interval_s: float | None  # fix time between two fixes of a device (None: 10 ms per fix overall)
    cold_round: bool  # report the first fix of every device apart (it enters the zones around it)


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


def device_positions(n: int, seed: int = 2) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(rng.uniform(BOX[0], BOX[1]), rng.uniform(BOX[2], BOX[3])) for _ in range(n)]


def make_workload(name: str, n_zones: int, n_devices: int, interval_s: float) -> Workload:
    if name == "spread":
        return Workload(name, make_zones(n_zones), device_positions(n_devices), None, False)
    import numpy as np

    from bench.bench_zones import fixes as near_stores
    from bench.bench_zones import workload

    rng = np.random.default_rng(1)
    zones, stores = workload(rng, 8000, 200, 500)
    lats, lngs = near_stores(rng, stores, n_devices)
    return Workload(name, zones, list(zip(lats.tolist(), lngs.tolist(), strict=True)), interval_s, True)


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


def fix_stream(w: Workload, positions: list, start: datetime, first: int, n: int, rng: random.Random) -> list:
    """Fixes ``first .. first + n`` of the workload's stream: device ``k % devices`` moves a few metres.

    ``positions`` is ``[lats, lngs]``, two lists of floats: a (lat, lng) tuple per device and round would
    leave 100,000 new tuples for the garbage collector to visit in the timed ingest that follows (one
    collection, ~25 ms a round), a cost of the load generator, not of the ingest."""
    from geofence.fixes import LocationFix

    lats, lngs = positions
    n_devices = len(lats)
    out = []
    for k in range(first, first + n):
        d = k % n_devices
        lat = lats[d] + rng.uniform(-3e-5, 3e-5)
        lng = lngs[d] + rng.uniform(-4e-5, 4e-5)
        lats[d], lngs[d] = lat, lng
        if w.interval_s is None:
            t = start + timedelta(milliseconds=10 * k)
        else:
            t = start + timedelta(seconds=w.interval_s * (k // n_devices), microseconds=d)
        out.append(LocationFix(f"dev{d}", lat, lng, rng.uniform(5, 40), t, client_fix_id=f"f{k}"))
    return out


def _timed(fn) -> tuple[float, float]:
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def heartbeat_rounds(w: Workload) -> int:
    """Rounds of every device in one heartbeat (``geofence.ingest.HEARTBEAT``) of fix time: every device's
    head is rewritten once in that many rounds, so a steady figure over fewer leaves those writes out."""
    from geofence.ingest import HEARTBEAT

    return math.ceil(HEARTBEAT.total_seconds() / w.interval_s) if w.interval_s else 1


def bench_in_process(
    url: str, w: Workload, n_fixes: int, batch: int, subscribers: bool, rounds: int | None = None
) -> dict[str, float]:
    import msgspec

    from geofence.events import EventBus
    from geofence.service.routes.locations import decode_fixes
    from geofence.service.runtime import bootstrap
    from geofence.service.settings import Settings

    settings = Settings(database_url=url, scheduler={"enabled": False}, auth_required=False)
    t0 = time.perf_counter()
    runtime = bootstrap(settings)
    runtime.geofence.location_consent = None
    if not subscribers:  # measure presence alone; campaign evaluation of events is downstream work
        runtime.bus = EventBus()
    service = runtime.geofence
    build_s = time.perf_counter() - t0
    gc.freeze()  # as the app's lifespan does once started
    positions = [[lat for lat, _ in w.homes], [lng for _, lng in w.homes]]
    rng = random.Random(3)
    start = datetime.now(UTC) - timedelta(hours=2)
    at = datetime.now(UTC)
    events = 0
    out: dict[str, float] = {"zones": len(service.index), "index_build_s": build_s}

    def run(batches: list) -> None:
        nonlocal events
        for b in batches:
            events += len(service.ingest(b, at=at).events)

    k = 0
    if w.cold_round:  # the first fix of every device: ~10 ENTERs each in the sparse workload
        cold = fix_stream(w, positions, start, 0, len(w.homes), rng)
        k = len(cold)
        wall, cpu = _timed(lambda: run([cold[i : i + batch] for i in range(0, len(cold), batch)]))
        out.update(cold_fixes=len(cold), cold_events=events, cold_fixes_per_s=len(cold) / wall,
                   cold_fixes_per_cpu_s=len(cold) / cpu)
        events = 0
    size = len(w.homes)
    # fixes/s of each round of every device (the first one after the cold round still settles: pending
    # enters confirmed, each device's steady summary made); each round's fixes are made untimed before it
    rates: list[float] = []
    times: list[tuple[float, float]] = []
    n_rounds = rounds if rounds is not None else math.ceil(n_fixes / size)
    for r in range(n_rounds):
        n = size if rounds is not None else min(size, n_fixes - r * size)
        part = fix_stream(w, positions, start, k, n, rng)
        k += len(part)
        wall, cpu = _timed(lambda part=part: run([part[i : i + batch] for i in range(0, len(part), batch)]))
        rates.append(len(part) / wall)
        times.append((wall, cpu))
    timed = k - (size if w.cold_round else 0)
    out.update(fixes=timed, events=events, ingest_fixes_per_s=timed / sum(t[0] for t in times),
               ingest_fixes_per_cpu_s=timed / sum(t[1] for t in times))
    out.update({f"round_{i + 1}_fixes_per_s": rate for i, rate in enumerate(rates)})
    cycle = heartbeat_rounds(w)
    if rounds is not None and len(times) >= 1 + cycle:  # the rounds after the settling one, over a full
        steady = times[1 : 1 + cycle]  # heartbeat: each device's head rewritten once, as it is in service
        out.update(steady_rounds=f"2-{1 + cycle}",
                   steady_fixes_per_s=cycle * size / sum(t[0] for t in steady),
                   steady_fixes_per_cpu_s=cycle * size / sum(t[1] for t in steady))

    # the stream goes on, now from JSON bodies, decoding included
    enc = msgspec.json.Encoder()
    more = fix_stream(w, positions, start, k, n_fixes, rng)
    bodies = [
        enc.encode({"fixes": [
            {"device_id": f.device_id, "lat": f.lat, "lng": f.lng, "accuracy_m": f.accuracy_m,
             "recorded_at": f.recorded_at, "client_fix_id": f.client_fix_id}
            for f in more[i : i + batch]
        ]})
        for i in range(0, len(more), batch)
    ]
    events = 0

    def run_json() -> None:
        nonlocal events
        for body in bodies:
            decoded, refused = decode_fixes(body, 1000)
            events += len(service.ingest(decoded, at=at, refused=refused).events)

    wall, cpu = _timed(run_json)
    out.update(json_events=events, json_ingest_fixes_per_s=n_fixes / wall,
               json_ingest_fixes_per_cpu_s=n_fixes / cpu)
    return out


def _wait_for(port: int) -> None:
    for _ in range(3000):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/openapi.json")
            if c.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"uvicorn on port {port} did not start")


# -- HTTP ------------------------------------------------------------------------------------------
def bench_app():  # uvicorn --factory bench.bench_ingest:bench_app
    """The real app, without the consent gate (the benchmark database has no customers) and, unless
    BENCH_SUBSCRIBERS=1, without the campaign subscribers."""
    from geofence.events import EventBus
    from geofence.service.app import create_app

    app = create_app()
    runtime = app.state.runtime
    runtime.geofence.location_consent = None
    if os.environ.get("BENCH_SUBSCRIBERS") != "1":
        runtime.bus = EventBus()
    return app


class _KeepAlive:
    """``POST /v1/locations`` on one HTTP/1.1 keep-alive connection, framed by hand: ``http.client``
    parses every answer's headers through the ``email`` package (~50 µs a request here). The answer's
    status is returned, its body (``content-length``) read and dropped."""

    def __init__(self, port: int, timeout: float = 60) -> None:
        self.port, self.timeout = port, timeout
        self.sock: socket.socket | None = None
        self.buf = b""
        self.head = (f"POST /v1/locations HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
                     "content-type: application/json\r\ncontent-length: ").encode()

    def _recv(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.buf += chunk

    def post(self, body: bytes) -> int:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.buf = b""
        self.sock.sendall(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._recv()
        head = self.buf[:end].lower() + b"\r\n"
        at = head.find(b"\r\ncontent-length:")
        if not head.startswith(b"http/1.1 ") or at < 0:
            raise http.client.HTTPException(f"unexpected answer: {head[:200]!r}")
        length = int(head[at + 17 : head.index(b"\r\n", at + 2)])
        while len(self.buf) < end + 4 + length:
            self._recv()
        self.buf = self.buf[end + 4 + length :]
        return int(head[9:12])

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock = None


def _client(
    port: int, seconds: float, client_no: int, pos: list, interval_s: float | None, warm_up: bool,
    barrier, out: mp.Queue, prepared_fixes: int = 0,
) -> None:
    rng = random.Random(100 + client_no)
    n_devices = len(pos)
    devices = [f"c{client_no}d{i}" for i in range(n_devices)]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lean = _KeepAlive(port) if prepared_fixes else None
    if lean is not None:  # the parent's heap (the workload's zones) is no garbage of the load generator's
        gc.freeze()
    base = datetime.now(UTC) - timedelta(hours=1)
    k = 0

    def body() -> bytes:
        nonlocal k
        parts = []
        if interval_s is None:
            stamp = (base + timedelta(milliseconds=k)).isoformat()
        else:
            stamp = (base + timedelta(seconds=interval_s * (k * 100 // n_devices))).isoformat()
        for j in range(100):
            d = (k * 100 + j) % n_devices
            lat, lng = pos[d]
            lat, lng = lat + rng.uniform(-3e-5, 3e-5), lng + rng.uniform(-4e-5, 4e-5)
            pos[d] = (lat, lng)
            parts.append(
                f'{{"device_id":"{devices[d]}","lat":{lat:.6f},"lng":{lng:.6f},'
                f'"accuracy_m":{rng.randint(5, 40)},"recorded_at":"{stamp}","client_fix_id":"{k}-{j}"}}'
            )
        k += 1
        return ('{"fixes":[' + ",".join(parts) + "]}").encode()

    def post(prepared: bytes | None = None) -> tuple[bool, float]:
        nonlocal conn
        payload = body() if prepared is None else prepared
        t0 = time.perf_counter()
        if lean is not None:
            try:
                status = lean.post(payload)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                print(f"client {client_no}: {type(exc).__name__}: {exc}", file=sys.stderr)
                lean.close()
                return False, time.perf_counter() - t0
            if status != 200:
                print(f"client {client_no}: HTTP {status}", file=sys.stderr)
            return status == 200, time.perf_counter() - t0
        try:
            conn.request("POST", "/v1/locations", payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            ok = resp.status == 200
            if not ok:
                print(f"client {client_no}: HTTP {resp.status}", file=sys.stderr)
        except (OSError, http.client.HTTPException) as exc:
            ok = False
            print(f"client {client_no}: {type(exc).__name__}: {exc}", file=sys.stderr)
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        return ok, time.perf_counter() - t0

    t_warm = time.perf_counter()
    if warm_up:  # untimed: the cold round (every device's first fix: its ENTERs), reported apart
        while k * 100 < n_devices:
            post()
    warm_s = time.perf_counter() - t_warm
    t_settle = time.perf_counter()
    if warm_up:  # and the settling round (pending enters confirmed, each worker reads each device once)
        while k * 100 < 2 * n_devices:
            post()
    settle_s = time.perf_counter() - t_settle
    # the timed phase's bodies made now, untimed: the load generator is not the product (then made on
    # the fly if the server outpaces them)
    prepared = [body() for _ in range(math.ceil(prepared_fixes / 100))]
    prepared.reverse()
    barrier.wait()
    cpu0 = time.process_time()
    conn.close()  # idle at the barrier longer than uvicorn's keep-alive: the server may have closed it
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    if lean is not None:
        lean.close()
    latencies: list[float] = []
    fixes_sent = errors = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while time.perf_counter() < deadline:
        ok, latency = post(prepared.pop() if prepared else None)
        latencies.append(latency)
        if ok:
            fixes_sent += 100
        else:
            errors += 1
    out.put((fixes_sent, errors, latencies, time.perf_counter() - t0, warm_s, settle_s,
             time.process_time() - cpu0, len(prepared)))


def _group_cpu_s(groups: list[int]) -> float:
    """CPU seconds (user + system) used so far by the processes of these process groups (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) in groups:  # pgrp; utime and stime follow
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _mark_server_cpu(
    groups: list[int], mark, before_timed=None, pg_mark: tuple[str, str] | None = None
) -> None:
    """The barrier's action (in the last client to arrive): the timed phase starts."""
    if before_timed is not None:  # e.g. bench_bus: until the ingest workers have drained the untimed rounds
        before_timed()
    if pg_mark is not None:  # (url, file): PostgreSQL's counters at the start, for the parent
        pg_counters.snapshot_to(*pg_mark)
    mark.value = _group_cpu_s(groups)  # the timed phase starts


def bench_http(
    url: str, w: Workload, *, seconds: float, workers: int, clients: int, listen: str = "shared",
    port: int = 18765, before_timed: Callable[[], None] | None = None, prepared_fixes: int = 0,
) -> dict[str, float]:
    """``clients`` processes, one request in flight each, on keep-alive connections.

    ``listen="shared"``: one ``uvicorn --workers N``; its workers share one listening socket and whichever
    accepts a connection first keeps it for the run, so 4 connections split 3/1 between 2 workers in 3
    runs of 4 (seen with ``ss``): one worker queues 3 requests while the other idles between its
    client's requests (35k fixes/s against 51k for a 2/2 split, same code). ``listen="ports"``: N
    single-worker uvicorn processes on N ports sharing the database, client ``i`` on port ``i % N``: what
    a load balancer in front of N replicas does, and the split is even whatever the accept race.
    ``before_timed`` runs between the untimed rounds and the timed phase (the clients wait at a barrier).
    ``prepared_fixes``: each client encodes that many fixes' bodies before the timed phase instead of
    during it (``prepared_left``: fixes of them not posted; 0 means some were made on the fly), and posts
    with ``_KeepAlive`` instead of ``http.client``: a leaner load generator, checking every status."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), GEOFENCE_DATABASE_URL=url, GEOFENCE_AUTH_REQUIRED="false",
               GEOFENCE_SCHEDULER__ENABLED="false", GEOFENCE_LOG__LEVEL="WARNING")
    layout = [(port, workers)] if listen == "shared" else [(port + i, 1) for i in range(workers)]
    pg_file = tempfile.NamedTemporaryFile(suffix=".json") if url.startswith("postgresql") else None
    servers = [
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "bench.bench_ingest:bench_app",
             "--host", "127.0.0.1", "--port", str(p), "--workers", str(n),
             "--log-level", "warning", "--no-access-log"],
            env=env, cwd=ROOT, start_new_session=True,
        )
        for p, n in layout
    ]
    try:
        for p, _ in layout:
            _wait_for(p)  # each worker builds its zone index first
        if listen == "shared":  # the first answer came from one worker; let the others finish too
            time.sleep(5.0 * workers)  # (on ports, every worker has answered already)
        queue: mp.Queue = mp.Queue()
        groups = [server.pid for server in servers]  # each uvicorn leads its own session
        server_cpu0 = mp.Value("d", 0.0)
        pg_mark = (url, pg_file.name) if pg_file is not None else None
        action = partial(_mark_server_cpu, groups, server_cpu0, before_timed, pg_mark)
        barrier = mp.Barrier(clients, action=action)
        share = len(w.homes) // clients
        procs = [
            mp.Process(target=_client, args=(layout[i % len(layout)][0], seconds, i,
                                             list(w.homes[i * share : (i + 1) * share]),
                                             w.interval_s, w.cold_round, barrier, queue,
                                             prepared_fixes))
            for i in range(clients)
        ]
        for p in procs:
            p.start()
        results = [queue.get() for _ in procs]
        server_cpu_s = _group_cpu_s(groups) - server_cpu0.value
        pg_cpu_end = pg_counters.backend_cpu_s(url) if pg_file is not None else {}
        for p in procs:
            p.join()
    finally:
        for server in servers:
            os.killpg(server.pid, signal.SIGTERM)
        for server in servers:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    fixes = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    elapsed = max(r[3] for r in results)
    lat = sorted(x for r in results for x in r[2])
    out = {
        "workers": workers, "listen": listen, "clients": clients, "seconds": elapsed, "fixes": fixes,
        "errors": errors,
        "fixes_per_s": fixes / elapsed, "requests": len(lat),
        "p50_ms": 1000 * statistics.median(lat) if lat else math.nan,
        "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else math.nan,
        # where the 2 cores went in the timed phase: the servers and the load generator share them
        "server_cores": server_cpu_s / elapsed, "client_cores": sum(r[6] for r in results) / elapsed,
        "server_cpu_ms_per_request": 1000 * server_cpu_s / max(1, len(lat)),
        "client_cpu_ms_per_request": 1000 * sum(r[6] for r in results) / max(1, len(lat)),
    }
    if pg_file is not None:  # read after the servers stopped: their backends' exit flushed the counters
        time.sleep(0.5)
        start = json.loads(Path(pg_file.name).read_text())
        end = {**pg_cpu_end, **pg_counters.counters(url)}
        out["postgres_per_request"] = pg_counters.per_request(start, end, len(lat))
        pg_file.close()
    if prepared_fixes:
        out["prepared_left"] = 100 * min(r[7] for r in results)
    if w.cold_round:
        out["cold_round_s"] = max(r[4] for r in results)
        out["cold_round_fixes_per_s"] = share * clients / out["cold_round_s"]
        out["settling_round_fixes_per_s"] = share * clients / max(r[5] for r in results)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", choices=["sparse", "spread", "both"], default="sparse")
    parser.add_argument("--zones", type=int, default=10_000, help="spread workload only")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--fixes", type=int, default=300_000,
                        help="timed fixes in-process from JSON (and, in the spread workload, before that)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="sparse workload, in-process: timed rounds of every device (default: the"
                             " settling round, a heartbeat's worth of rounds and one more)")
    parser.add_argument("--fix-interval-s", type=float, default=SPARSE_INTERVAL_S,
                        help="sparse workload only")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--http-seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--listen", choices=["shared", "ports"], default="shared",
                        help="one uvicorn --workers N (shared socket) or N uvicorns on N ports (bench_http)")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--with-subscribers", action="store_true",
                        help="keep the campaign subscribers on the event bus (measures them too)")
    args = parser.parse_args()
    if args.with_subscribers:
        os.environ["BENCH_SUBSCRIBERS"] = "1"
    for name in ("sparse", "spread") if args.workload == "both" else (args.workload,):
        w = make_workload(name, args.zones, args.devices, args.fix_interval_s)
        with tempfile.TemporaryDirectory() as tmp:
            url = args.database_url or f"sqlite:///{tmp}/bench.db"
            seed_database(url, w.zones)
            print(f"workload={name} cpus={os.cpu_count()} zones={len(w.zones)} devices={args.devices}"
                  f" db={url.split(':')[0]}", flush=True)
            if not args.skip_in_process:
                rounds = args.rounds
                if rounds is None and name == "sparse":
                    rounds = heartbeat_rounds(w) + 2
                r = bench_in_process(url, w, args.fixes, args.batch, args.with_subscribers,
                                     rounds if name == "sparse" else None)
                r = {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}
                print(json.dumps({"in_process": r}, indent=1), flush=True)
            if not args.skip_http:
                h = bench_http(url, w, seconds=args.http_seconds, workers=args.workers, clients=args.clients,
                               listen=args.listen)
                h = {k: round(v, 2) if isinstance(v, float) else v for k, v in h.items()}
                print(json.dumps({"http": h}, indent=1), flush=True)


if __name__ == "__main__":
    main()
