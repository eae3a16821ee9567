"""Export throughput and memory: N zone events exported as CSV and as Segment NDJSON.

    .venv/bin/python bench/bench_export.py                 # 1,000,000 rows, SQLite file in a temp dir
    .venv/bin/python bench/bench_export.py --rows 200000 --url postgresql+psycopg://postgres@127.0.0.1/bench

Each export runs in a child process so its peak RSS (ru_maxrss of the child) is the export's own,
not the loading phase's. Constant memory means the peak does not grow with --rows.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert

from geofence.service.db import create_schema, make_engine
from geofence.service.tables.customers import Customer
from geofence.service.tables.presence import ZoneEventRow

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def load(url: str, rows: int, customers: int) -> None:
    engine = make_engine(url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(insert(Customer), [
            {"id": f"c{i}", "crm_id": f"HS-{i}", "locale": "fr", "tz": "Europe/Paris", "country": "FR",
             "attributes": {}, "created_at": T0}
            for i in range(customers)
        ])  # fmt: skip
    batch = 20_000
    kinds = ("enter", "dwell", "exit")
    for start in range(0, rows, batch):
        values = []
        for i in range(start, min(rows, start + batch)):
            at = T0 + timedelta(seconds=i)
            values.append({
                "id": f"e{i:09d}", "zone_id": f"z{i % 50}", "device_id": f"d{i % customers}",
                "customer_id": f"c{i % customers}", "kind": kinds[i % 3], "at": at,
                "visit_id": f"v{i // 3}", "reason": "inside", "lat": 48.841, "lng": 2.44, "recorded_at": at,
            })  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(ZoneEventRow), values)
    engine.dispose()


def export_child(url: str, fmt: str, out: str, queue: mp.Queue) -> None:  # type: ignore[type-arg]
    from campaigns.export import plan_export
    from campaigns.export.pipeline import write_export

    engine = make_engine(url)
    started = time.perf_counter()
    plan = plan_export(engine, "zone_events", None, at=datetime.now(UTC), settle_s=0)
    written = write_export(engine, plan, fmt, Path(out), batch_size=2000)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((written.rows, written.bytes, elapsed, peak_kib))


def main() -> None:
    fmt_class = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt_class)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--url", default=None, help="database URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url or f"sqlite:///{tmp}/bench.db"
        t = time.perf_counter()
        load(url, args.rows, args.customers)
        print(f"loaded {args.rows:,} zone events in {time.perf_counter() - t:.1f} s ({url.split(':')[0]})")
        ctx = mp.get_context("spawn")
        for fmt in ("csv", "ndjson"):
            queue = ctx.Queue()
            child = ctx.Process(target=export_child, args=(url, fmt, f"{tmp}/out.{fmt}", queue))
            child.start()
            rows, size, elapsed, peak_kib = queue.get()
            child.join()
            print(
                f"{fmt:<6} {rows:,} rows in {elapsed:.1f} s = {rows / elapsed:,.0f} rows/s, "
                f"{size / 1e6:,.0f} MB written, peak RSS {peak_kib / 1024:,.0f} MiB"
            )


if __name__ == "__main__":
    main()
