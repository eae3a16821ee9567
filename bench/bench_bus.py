"""Partitioned ingest benchmark: fixes/s over HTTP with GEOFENCE_BUS on PostgreSQL, 2 API processes and
1, 2 and 4 ``geofence ingest-worker`` processes, with p99 of the answers and CPU per 1,000 fixes.

    .venv/bin/python -m bench.bench_bus                       # 1, 2 and 4 workers, sparse workload
    .venv/bin/python -m bench.bench_bus --ingest-workers 2 --http-seconds 20 --devices 50000

The load generator and the API side are ``bench.bench_ingest``'s (``bench_http``: ``--clients`` processes
posting 100-fix bodies to 2 uvicorns on 2 ports, its sparse workload: ~8,700 zones, devices near stores,
~10 zones per fix), with ``GEOFENCE_BUS`` set: the API checks and publishes, answering once JetStream has
acknowledged. The ingest workers run at the same time, on the same 2 cores, and drain the stream into a
throw-away PostgreSQL database (``tests.service.processes.fresh_postgres``); a NATS stream, subject and
lease bucket of the run's own on the local server (``--nats``).

The untimed rounds (bench_http's cold round, every device's first fix: ~10 ENTERs each, and the settling
round) are drained by the workers before the timed phase starts (``--no-settle``: not waited for), so the
timed phase shows whether the workers keep up with the API in real time; their cost is reported apart.

Printed per worker count: ``http`` (bench_http's figures: fixes/s acknowledged, p50/p99 ms, the API
processes' and the clients' cores), ``lag_fixes_at_end`` (published, not yet ingested, when the HTTP phase
ended), ``acknowledged_and_ingested_fixes_per_s`` (the timed fixes over the time from the timed phase's
start until the workers had ingested them all: what the deployment sustains), ``workers_timed_*`` (the
workers' rate and fixes per CPU-second over the timed fixes), ``warm_up_workers_cpu_s`` (the untimed
rounds' cost in the workers), ``workers_fixes_per_s`` and ``workers_*_per_*`` over everything from their
first commit, CPU seconds per 1,000 fixes of the API processes and fixes per CPU-second (per-core
efficiency). ``--partitions`` sets the stream's partitions: a 100-fix request is one message per
partition it touches (about all of them), the API's main cost per request. The machine is shared: give
``/proc/loadavg`` (printed) next to any figure.

``cpu_us_per_fix`` is the map of where the CPU went, in µs per timed fix: ``clients`` (the load
generator) and ``api`` over the HTTP phase, ``workers``, ``nats`` (the local ``nats-server``, shared with
the box), ``postgres_db`` (the backends of the run's database) and ``postgres_background`` (WAL writer,
checkpointer…, shared) from the timed phase's start until the workers had ingested everything
(``bench.cpu_roles``); ``sum`` of those, and ``machine``: the whole box's busy time over that span, so
other users' load shows as ``machine - sum``. The clients encode the timed phase's bodies before it
(``--prepare-rate`` fixes/s, then on the fly; ``prepared_fixes_left`` > 0 means none were made on the
fly): the load generator is not the product, yet it shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_ingest import _group_cpu_s, bench_http, make_workload, seed_database  # noqa: E402
from bench.cpu_roles import cpu_by_role, difference  # noqa: E402
from tests.service.processes import fresh_postgres  # noqa: E402

PG_ADMIN_URL = os.environ.get(
    "GEOFENCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def ingested(url: str) -> int:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        n = conn.execute(text("SELECT coalesce(sum(fixes), 0) FROM ingest_partitions")).scalar()
    engine.dispose()
    return int(n or 0)


def _drop(nats_url: str, stream: str, bucket: str) -> None:
    async def drop() -> None:
        import nats

        nc = await nats.connect(nats_url)
        js = nc.jetstream()
        for coro in (js.delete_stream(stream), js.delete_key_value(bucket)):
            try:
                await coro
            except Exception:
                pass
        await nc.close()

    asyncio.run(drop())


def free_port_pair() -> int:
    """A port p with p + 1 free too (the 2 uvicorns): other benchmarks may hold bench_ingest's default."""
    import socket

    for _ in range(100):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no two consecutive free ports")


def wait_ingested(url: str, fixes: int, timeout_s: float) -> None:
    """Until the workers have ingested ``fixes`` (the untimed rounds: the timed phase starts with no lag)."""
    deadline = time.monotonic() + timeout_s
    while ingested(url) < fixes and time.monotonic() < deadline:
        time.sleep(0.2)


def mark_timed_start(settle, path: Path, worker_groups: list[int], url: str) -> None:
    """The clients' barrier action: drain the untimed rounds (``settle``), then read the CPU map and
    how many fixes the workers had ingested."""
    if settle is not None:
        settle()
    roles = cpu_by_role(worker_groups, url.rsplit("/", 1)[1])
    path.write_text(json.dumps({"roles": roles, "ingested": ingested(url)}))


def cpu_map(http: dict[str, float], during: dict[str, float], fixes: int) -> dict[str, float]:
    """Microseconds of CPU per timed fix, per role: the clients and the API over the HTTP phase (their
    own readings), the rest from the timed phase's start until the workers had ingested everything."""
    seconds = float(http["seconds"])
    cpu_s = {
        "clients": float(http["client_cores"]) * seconds, "api": float(http["server_cores"]) * seconds,
        **{k: v for k, v in during.items() if k != "machine"},
    }
    per_fix = {k: round(1e6 * v / max(1, fixes), 1) for k, v in cpu_s.items()}
    per_fix["sum"] = round(sum(per_fix.values()), 1)
    # the machine's busy time over the timed phase and drain: what the roles above leave out is the
    # harness, the kernel and other users of the box
    per_fix["machine"] = round(1e6 * during["machine"] / max(1, fixes), 1)
    return per_fix


def wait_workers_ready(nats_url: str, bucket: str, workers: int, timeout_s: float = 600) -> None:
    """Until every worker has registered in the lease bucket (it has built its zone index)."""

    async def registered() -> int:
        import nats
        from nats.js.errors import BucketNotFoundError, NoKeysError

        nc = await nats.connect(nats_url)
        try:
            kv = await nc.jetstream().key_value(bucket)
            return sum(1 for k in await kv.keys() if k.startswith("w."))
        except (BucketNotFoundError, NoKeysError):
            return 0
        finally:
            await nc.close()

    deadline = time.monotonic() + timeout_s
    while asyncio.run(registered()) < workers and time.monotonic() < deadline:
        time.sleep(0.5)


def run(args: argparse.Namespace, workers: int) -> dict[str, object]:
    tag = uuid.uuid4().hex[:8]
    stream, subject, bucket = f"BENCH_FIXES_{tag}", f"bench.{tag}.fixes", f"bench_leases_{tag}"
    w = make_workload("sparse", 0, args.devices, 5.0)
    with ExitStack() as stack:
        url = stack.enter_context(fresh_postgres(PG_ADMIN_URL))
        stack.callback(_drop, args.nats, stream, bucket)
        seed_database(url, w.zones)
        env = {
            "GEOFENCE_BUS": args.nats, "GEOFENCE_PARTITIONED__STREAM": stream,
            "GEOFENCE_PARTITIONED__SUBJECT": subject, "GEOFENCE_PARTITIONED__LEASE_BUCKET": bucket,
            "GEOFENCE_PARTITIONED__PARTITIONS": str(args.partitions), "GEOFENCE_MIGRATE_ON_START": "false",
            "GEOFENCE_DATABASE_URL": url, "GEOFENCE_LOG__LEVEL": "WARNING", "GEOFENCE_AUTH_REQUIRED": "false",
            "GEOFENCE_SCHEDULER__ENABLED": "false",
        }
        os.environ.update(env)  # bench_http's uvicorns inherit the environment
        procs = [
            subprocess.Popen([sys.executable, "-c", "from geofence.service.cli import main; main()",
                              "ingest-worker"], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                             start_new_session=True, stdout=subprocess.DEVNULL)
            for _ in range(workers)
        ]
        groups = [p.pid for p in procs]
        try:
            wait_workers_ready(args.nats, bucket, workers)  # start-up (the zone index) is not measured
            samples: list[tuple[float, int, float]] = []  # (time, fixes ingested, workers' CPU s)
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    samples.append((time.monotonic(), ingested(url), _group_cpu_s(groups)))
                    stop.wait(0.5)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            t0 = time.monotonic()
            share = len(w.homes) // args.clients  # each client's devices: two untimed rounds of them first
            warm = args.clients * math.ceil(2 * share / 100) * 100
            settle = None if args.no_settle else partial(wait_ingested, url, warm, args.settle_timeout_s)
            mark = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "timed_start.json"
            database = url.rsplit("/", 1)[1]
            http = bench_http(url, w, seconds=args.http_seconds, workers=2, clients=args.clients,
                              listen="ports", port=free_port_pair(),
                              before_timed=partial(mark_timed_start, settle, mark, groups, url),
                              prepared_fixes=math.ceil(args.prepare_rate * args.http_seconds / args.clients))
            t_http = time.monotonic()
            at_end = ingested(url)
            posted = int(http["fixes"]) + warm
            deadline = time.monotonic() + args.drain_timeout_s
            while ingested(url) < posted and time.monotonic() < deadline:
                time.sleep(0.2)
            t_drained = time.monotonic()
            at_start = json.loads(mark.read_text())
            during = difference(cpu_by_role(groups, database), at_start["roles"])
            stop.set()
            sampler.join()
            done = ingested(url)
            cpu_end = _group_cpu_s(groups)
            cpu_workers = cpu_end - (samples[0][2] if samples else 0.0)
        finally:
            for p in procs:
                os.killpg(p.pid, signal.SIGTERM)
            for p in procs:  # a worker finishes its batch in hand first: on a busy box, that can take a while
                try:
                    p.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
    http_s = float(http["seconds"])
    api_cpu_s = float(http["server_cores"]) * http_s
    # the workers' rate: from their first commit to the stream's end (start-up excluded) ...
    first = next((s for s in samples if s[1] > 0), (t0, 0, 0.0))
    # ... and once they had ingested the untimed rounds (the cold one: every device entering ~10 zones)
    steady = next((s for s in samples if s[1] >= warm), samples[-1] if samples else (t0, 0, 0.0))
    steady_cpu_s = cpu_end - steady[2]
    timed_start = t_http - http_s
    return {
        "ingest_workers": workers, "partitions": args.partitions,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "http_fixes_per_s": round(float(http["fixes_per_s"])), "p50_ms": round(float(http["p50_ms"]), 1),
        "p99_ms": round(float(http["p99_ms"]), 1), "http_errors": http["errors"],
        "api_cores": round(float(http["server_cores"]), 2),
        "client_cores": round(float(http["client_cores"]), 2),
        "prepared_fixes_left": http.get("prepared_left"),
        "api_cpu_s_per_1000_fixes": round(1000 * api_cpu_s / max(1, int(http["fixes"])), 3),
        "api_fixes_per_cpu_s": round(int(http["fixes"]) / max(1e-9, api_cpu_s)),
        "posted_fixes": posted, "ingested_fixes": done, "lag_fixes_at_end": posted - at_end,
        "workers_fixes_per_s": round((done - first[1]) / max(1e-9, t_drained - first[0])),
        "drain_s_after_http": round(t_drained - t_http, 1),
        "workers_cpu_s_per_1000_fixes": round(1000 * cpu_workers / max(1, done), 3),
        "workers_fixes_per_cpu_s": round(done / max(1e-9, cpu_workers)),
        "warm_up_fixes": warm, "warm_up_workers_cpu_s": round(steady[2] - first[2], 1),
        # > 0: the settle timed out and the untimed rounds' rest (the cold round's ENTERs) is in the timed
        # phase's figures
        "untimed_fixes_left_at_timed_start": max(0, warm - int(at_start["ingested"])),
        "workers_timed_fixes_per_s": round((done - steady[1]) / max(1e-9, t_drained - steady[0])),
        "workers_timed_fixes_per_cpu_s": round((done - steady[1]) / max(1e-9, steady_cpu_s)),
        "acknowledged_and_ingested_fixes_per_s": round(min(done - warm, int(http["fixes"]))
                                                      / max(1e-9, t_drained - timed_start)),
        "cpu_us_per_fix": cpu_map(http, during, int(http["fixes"])),
        "timed_and_drain_s": round(t_drained - timed_start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ingest-workers", type=int, nargs="*", default=[1, 2, 4])
    parser.add_argument("--devices", type=int, default=50_000)
    parser.add_argument("--partitions", type=int, default=4,
                        help="the stream's partitions (P >= the most workers run: 4 here)")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--http-seconds", type=float, default=15.0)
    parser.add_argument("--drain-timeout-s", type=float, default=300.0)
    parser.add_argument("--prepare-rate", type=float, default=80_000,
                        help="fixes/s the clients encode before the timed phase (then on the fly; 0: all"
                             " on the fly, as before)")
    parser.add_argument("--settle-timeout-s", type=float, default=600.0,
                        help="at most this long for the workers to ingest the untimed rounds")
    parser.add_argument("--no-settle", action="store_true",
                        help="start the timed phase without waiting for the workers to drain the warm-up")
    parser.add_argument("--nats", default=os.environ.get("GEOFENCE_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    args = parser.parse_args()
    print(f"cpus={os.cpu_count()} loadavg={Path('/proc/loadavg').read_text().strip()}", flush=True)
    for n in args.ingest_workers:
        print(json.dumps({"bus": run(args, n)}, indent=1), flush=True)


if __name__ == "__main__":
    main()
