"""Sends under faults, at more rounds than the test suite: two ``geofence worker`` processes on PostgreSQL,
the real FCM and Twilio providers against the loopback fakes.

    .venv/bin/python -m bench.bench_send_faults                       # defaults below
    .venv/bin/python -m bench.bench_send_faults --rows 600 --kills 40 --chaos-seconds 60

Phase 1: ``--kills`` × ``kill -9`` of a worker while it has a send in flight (restarted each time).
Phase 2: ``pg_terminate_backend`` of the workers' connections every 0.1–0.4 s for ``--chaos-seconds``,
while the fakes answer 30 % 503 and hold 10 % past the client's timeout (then accept them).

Figures printed per phase: deliveries, messages accepted by the fakes, duplicates (recipients with more
than one accepted message: must be 0), deliveries settled as ``reconciled`` / ``ambiguous_send``, and the
time until every delivery was settled. Needs PostgreSQL (``GEOFENCE_TEST_POSTGRES_URL``).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from geofence.service.db import make_engine
from tests.conftest import PG_ADMIN_URL
from tests.fakes.fcm_transport import FakeFcmServer
from tests.fakes.loopback import Chaos
from tests.fakes.twilio_server import FakeTwilioServer
from tests.service.processes import fresh_postgres
from tests.service.test_sends_under_faults import Workers, check_once_each, fill, scalar, wait_until_settled


def _report(phase: str, engine, fcm, twilio, rows: int, took_s: float, extra: str) -> None:  # type: ignore[no-untyped-def]
    outcomes: Counter[str] = check_once_each(engine, fcm, twilio, rows)
    accepted = sum(fcm.accepted.values()) + sum(twilio.accepted.values())
    dup = sum(1 for c in (*fcm.accepted.values(), *twilio.accepted.values()) if c > 1)
    reasons = Counter()
    for key, count in outcomes.items():
        reasons[key.rsplit(":", 1)[1]] += count
    print(f"{phase}: {rows} deliveries, {accepted} messages accepted, {dup} duplicates, "
          f"{reasons['reconciled']} reconciled, {reasons['ambiguous_send']} ambiguous_send, "
          f"settled in {took_s:.0f} s; {extra}")
    print("   outcomes (channel:status:reason):", dict(sorted(outcomes.items())))


def kills_phase(rows: int, kills: int) -> None:
    handle = ExitStack()  # the database is dropped when the phase ends
    url = handle.enter_context(fresh_postgres(PG_ADMIN_URL))
    engine = make_engine(url)
    try:
        with tempfile.TemporaryDirectory() as tmp, FakeFcmServer(delay_s=0.3) as fcm, \
                FakeTwilioServer(delay_s=0.3) as twilio:
            workers = Workers(url, fcm, twilio, Path(tmp), timeout_s=0.6, lease_s=5)
            started = time.monotonic()
            landed = 0
            try:
                workers.start("a")
                workers.start("b")
                fill(engine, rows)
                for k in range(kills):
                    name = "ab"[k % 2]
                    pid = workers.procs[name].pid
                    deadline = time.monotonic() + 30
                    while time.monotonic() < deadline and not scalar(
                        engine, "SELECT count(*) FROM deliveries WHERE status = 'sending' AND reason IS NULL"
                        " AND send_started_at = updated_at AND leased_by LIKE :p", p=f"%:{pid}:%"
                    ):
                        time.sleep(0.01)
                    landed += time.monotonic() < deadline
                    workers.kill(name)
                    workers.start(name)
                wait_until_settled(engine, workers)
            finally:
                workers.stop()
            _report("kill -9", engine, fcm, twilio, rows, time.monotonic() - started,
                    f"{kills} kills, {landed} with a send in flight")
    finally:
        engine.dispose()
        handle.close()


def chaos_phase(rows: int, seconds: float) -> None:
    handle = ExitStack()  # the database is dropped when the phase ends
    url = handle.enter_context(fresh_postgres(PG_ADMIN_URL))
    engine = make_engine(url)
    stop = threading.Event()
    terminated: list[int] = []

    def terminate() -> None:
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.1, 0.4)):
            sql = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                   " WHERE application_name LIKE 'faults-%'")
            terminated.append(int(scalar(engine, sql) or 0))

    chaos = Chaos(unavailable_rate=0.3, hold_rate=0.1, hold_s=0.8, seed=26)
    try:
        with tempfile.TemporaryDirectory() as tmp, FakeFcmServer(chaos=chaos) as fcm, \
                FakeTwilioServer(chaos=chaos) as twilio:
            workers = Workers(url, fcm, twilio, Path(tmp))
            killer = threading.Thread(target=terminate, daemon=True)
            started = time.monotonic()
            try:
                workers.start("a")
                workers.start("b")
                fill(engine, rows)
                killer.start()
                time.sleep(seconds)
                stop.set()
                killer.join(timeout=10)
                wait_until_settled(engine, workers)
            finally:
                stop.set()
                workers.stop()
            _report("503/hold/pg_terminate_backend", engine, fcm, twilio, rows, time.monotonic() - started,
                    f"{sum(terminated)} connections terminated, {fcm.arrived + twilio.arrived} requests")
    finally:
        engine.dispose()
        handle.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--chaos-seconds", type=float, default=20.0)
    args = parser.parse_args()
    kills_phase(args.rows, args.kills)
    chaos_phase(args.rows, args.chaos_seconds)


if __name__ == "__main__":
    main()
