"""Crash benchmark: ``kill -9`` of the consuming worker between an event's commit and its decision.

    .venv/bin/python -m bench.bench_crash                 # 50 kills, 1,500 events, PostgreSQL

``--events`` ENTER events are committed to the zone-event log; ``geofence worker`` is started and killed
with SIGKILL as soon as it has decided something more (plus 0-60 ms), ``--kills`` times, then one worker
finishes. Printed: how many events were decided at each kill, and whether every event was decided
exactly once (one delivery per event: none lost, none twice). The test suite runs the same with 3 kills
(``tests/service/test_cross_process.py``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.service import processes  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--events", type=int, default=1500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-crash-"))
    started = time.perf_counter()
    with processes.fresh_postgres(args.admin_url) as url:
        processes.seed_world(url, args.events)
        at_kill = processes.crash_loop(url, work, kills=args.kills, events=args.events)
        counts = processes.decided(url)
    twice = sum(1 for n in counts.values() if n > 1)
    lost = args.events - len(counts)
    print(f"kills: {len(at_kill)} (decided at each: {at_kill})")
    print(f"events: {args.events}, decided: {len(counts)}, lost: {lost}, decided twice: {twice}")
    print(f"took {time.perf_counter() - started:.0f} s")
    return 0 if (lost, twice, len(at_kill)) == (0, 0, args.kills) else 1


if __name__ == "__main__":
    raise SystemExit(main())
