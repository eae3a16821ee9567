"""One ingest worker alone on a pre-filled fix stream: its CPU per fix, with PostgreSQL's and NATS's.

    .venv/bin/python -m bench.bench_bus_worker --devices 20000 --rounds 8 --partitions 16
    .venv/bin/python -m bench.bench_bus_worker --profile worker.svg     # py-spy over the steady rounds

The API side is left out: the stream is filled first through ``FixPublisher`` (100-fix requests of
``bench_ingest``'s sparse workload: the cold round, every device's first fix entering ~10 zones, the
settling round, then ``--rounds`` steady rounds), then one ``IngestWorker`` (on a thread of this
process, as ``geofence ingest-worker`` runs it) drains it into a throw-away PostgreSQL database. The
figures are over the steady rounds only: this process's CPU (the worker: its event loop, readers and
committer), the PostgreSQL backends of the database and the NATS server (shared with the box), each
in µs per fix, and the worker's fixes per second of wall time. With ``--profile``, ``py-spy`` records
this process over the steady rounds (``pip install py-spy``; not a project dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_bus import PG_ADMIN_URL, _drop  # noqa: E402
from bench.bench_ingest import fix_stream, make_workload, seed_database  # noqa: E402
from bench.cpu_roles import cpu_by_role, difference  # noqa: E402
from tests.service.processes import fresh_postgres  # noqa: E402


def fill(settings, w, rounds: int) -> int:
    """Publish every round of every device, 100 fixes a request, as the API would; the fixes count."""
    from geofence.fixes import FixLimits
    from geofence.service.bus.link import NatsLink
    from geofence.service.bus.publisher import FixPublisher

    link = NatsLink(settings.bus, settings.partitioned)
    publisher = FixPublisher(link, FixLimits())
    n = len(w.homes)
    positions = [[lat for lat, _ in w.homes], [lng for _, lng in w.homes]]
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(7)
    total = 0
    try:
        for first in range(0, rounds * n, 10_000):
            fixes = fix_stream(w, positions, start, first, min(10_000, rounds * n - first), rng)
            at = datetime.now(UTC)
            for i in range(0, len(fixes), 100):
                publisher.publish(fixes[i : i + 100], at=at)
            total += len(fixes)
    finally:
        link.close()
    return total


def wait_ingested(engine, fixes: dict[int, int]) -> int:
    """Until each partition's checkpoint counts its ``fixes`` (partition -> fixes); the fixes ingested
    then. Per partition: partitions progress unevenly through a pre-filled stream, and the steady rounds
    are timed from when the last partition is past the untimed ones. One connection, polled."""
    from sqlalchemy import text

    while True:
        with engine.connect() as conn:
            done = dict(conn.execute(text("SELECT partition, fixes FROM ingest_partitions")).all())
        if all(done.get(p, 0) >= n for p, n in fixes.items()):
            return int(sum(done.values()))
        time.sleep(0.1)


def per_partition(devices: int, rounds: int, partitions: int) -> dict[int, int]:
    """Fixes of ``rounds`` rounds of ``dev0 .. dev<devices - 1>`` in each partition."""
    from collections import Counter

    from geofence.service.bus.partitions import partition_of

    counts = Counter(partition_of(f"dev{d}", partitions) for d in range(devices))
    return {p: rounds * n for p, n in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--devices", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=8,
                        help="steady rounds after the cold and settling ones")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--nats", default=os.environ.get("GEOFENCE_TEST_NATS_URL", "nats://127.0.0.1:4222"))
    parser.add_argument("--profile", default=None, help="py-spy flame graph of the steady rounds (.svg)")
    args = parser.parse_args()

    from geofence.service.settings import PartitionedIngestSettings
    from tests.service.bus_support import Bus, ingest_worker, settings_for

    tag = os.urandom(4).hex()
    config = PartitionedIngestSettings(
        partitions=args.partitions, stream=f"BENCH_FIXES_{tag}", subject=f"bench.{tag}.fixes",
        lease_bucket=f"bench_leases_{tag}",
    )
    w = make_workload("sparse", 0, args.devices, 5.0)
    with tempfile.TemporaryDirectory() as tmp, fresh_postgres(PG_ADMIN_URL) as url:
        try:
            seed_database(url, w.zones)
            settings = settings_for(Path(tmp), url, Bus(args.nats, config))
            total = fill(settings, w, 2 + args.rounds)
            database = url.rsplit("/", 1)[1]
            from sqlalchemy import create_engine

            engine = create_engine(url, pool_size=1)
            with ingest_worker(settings):
                done0 = wait_ingested(engine, per_partition(args.devices, 2, args.partitions))
                spy = None
                if args.profile:
                    spy = subprocess.Popen(
                        [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(os.getpid()),
                         "--nonblocking", "--threads", "-o", args.profile,
                         "--format", "raw" if args.profile.endswith(".txt") else "flamegraph"],
                        stdout=subprocess.DEVNULL)
                t0, cpu0, roles0 = time.monotonic(), time.process_time(), cpu_by_role([], database)
                wait_ingested(engine, per_partition(args.devices, 2 + args.rounds, args.partitions))
                t1, cpu1, roles1 = time.monotonic(), time.process_time(), cpu_by_role([], database)
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(60)
            engine.dispose()
            fixes = total - done0
            roles = difference(roles1, roles0)
            print(json.dumps({
                "devices": args.devices, "partitions": args.partitions, "steady_fixes": fixes,
                "threads": threading.active_count(),
                "worker_fixes_per_s": round(fixes / (t1 - t0)),
                "us_per_fix": {
                    "worker": round(1e6 * (cpu1 - cpu0) / fixes, 1),
                    "postgres_db": round(1e6 * roles["postgres_db"] / fixes, 1),
                    "postgres_background": round(1e6 * roles["postgres_background"] / fixes, 1),
                    "nats": round(1e6 * roles["nats"] / fixes, 1),
                    "machine": round(1e6 * roles["machine"] / fixes, 1),
                },
                "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            }, indent=1), flush=True)
        finally:
            _drop(args.nats, config.stream, config.lease_bucket)


if __name__ == "__main__":
    main()
