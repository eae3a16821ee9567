"""Webhook benchmark: deliveries/s to a loopback receiver, and event -> webhook latency.

    .venv/bin/python -m bench.bench_webhooks                        # SQLite file, 2000 + 200 events
    .venv/bin/python -m bench.bench_webhooks --database-url postgresql+psycopg://postgres@127.0.0.1/DB

In one process: the worker's loops (the ``webhooks`` log consumer and the sender) and a loopback
receiver that verifies every request with ``standardwebhooks`` (its cost is in the figures).
Throughput: ``--events`` events committed while the loops are stopped, then the time until the receiver
has them all. Latency: ``--latency-events`` events committed one by one every ``--gap-ms`` (50 ms)
with the loops running (the commit wakes them, as the ingest does); the latency is the receiver's
arrival time minus the time just before the commit. Goal (issue 25): p99 < 500 ms.
Arrival alerts: ``--arrivals`` zone events (enter, a new visit each) at a store zone by customers who
consented to ``store_welcome``, one every ``--gap-ms``: zone event commit -> ``store_arrivals`` consumer
(alert emitted) -> store-event relay -> sender -> a second receiver; the same latency, end to end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from geofence.events import TransitionKind, ZoneEvent  # noqa: E402
from geofence.service.db import create_schema, make_engine  # noqa: E402
from geofence.service.event_log import append  # noqa: E402
from geofence.service.loops import start_loops  # noqa: E402
from geofence.service.runtime import bootstrap  # noqa: E402
from geofence.service.settings import Settings  # noqa: E402
from geofence.service.webhooks import register_endpoint  # noqa: E402
from tests.service.webhook_receiver import start_receiver  # noqa: E402


def _events(prefix: str, n: int) -> list[ZoneEvent]:
    now = datetime.now(UTC)
    return [
        ZoneEvent(id=f"{prefix}{i:06d}", zone_id="store", device_id=f"dev-{i % 50}",
                  kind=TransitionKind.ENTER, at=now, visit_id=f"v{i}", reason="bench")
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-events", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=50.0, help="between the latency run's commits")
    parser.add_argument("--arrivals", type=int, default=100, help="arrival alerts for the latency run")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    url = args.database_url or f"sqlite:///{tmp}/bench.db"
    engine = make_engine(url)
    create_schema(engine)
    settings = Settings(env="test", hash_key="bench-hash-key-not-secret", public_base_url="http://127.0.0.1:8000",
                        database_url=url, outbox_dir=tmp / "outbox", export_dir=tmp / "exports",
                        migrate_on_start=False, auth_required=False,
                        webhooks={"allow_private_targets": True}, log={"level": "WARNING"})
    runtime = bootstrap(settings, engine)
    receiver = start_receiver()
    from sqlmodel import Session

    with Session(engine, expire_on_commit=False) as session:
        _row, receiver.secret = register_endpoint(session, receiver.url, ["zone.*"], allow_private=True,
                                                  at=datetime.now(UTC))

    batch = _events("t", args.events)
    for start in range(0, len(batch), 500):
        append(engine, batch[start : start + 500], recorded_at=datetime.now(UTC))
    began = time.perf_counter()
    loops = start_loops(runtime.loops, ("worker",), engine=engine, wakeups=runtime.wakeups)
    try:
        while len(receiver.accepted) < args.events:
            time.sleep(0.01)
        took = time.perf_counter() - began
        print(f"throughput: {args.events} webhooks in {took:.2f} s = {args.events / took:,.0f} deliveries/s "
              f"({engine.dialect.name}, one endpoint, signed and verified)")
        sent_at: dict[str, float] = {}
        for event in _events("l", args.latency_events):
            sent_at[event.id] = time.perf_counter()
            append(engine, [event], recorded_at=datetime.now(UTC))
            runtime.wakeups.events.set()  # as the ingest's commit does
            time.sleep(args.gap_ms / 1000)
        deadline = time.monotonic() + 60
        while len(receiver.accepted) < args.events + args.latency_events and time.monotonic() < deadline:
            time.sleep(0.01)
        arrived_ms = _arrival_latencies(engine, runtime, args.arrivals, args.gap_ms / 1000)
    finally:
        loops.stop()
    ms = sorted((r.at - sent_at[r.body["data"]["event_id"]]) * 1000 for r in receiver.accepted
                if r.body["data"]["event_id"] in sent_at)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(f"latency event commit -> webhook received ({len(ms)} events): p50 {statistics.median(ms):.1f} ms, "
          f"p99 {p99:.1f} ms, max {ms[-1]:.1f} ms (goal p99 < 500 ms)")
    assert receiver.bad_signatures == 0
    if arrived_ms:
        arrived_ms.sort()
        p99 = arrived_ms[min(len(arrived_ms) - 1, int(len(arrived_ms) * 0.99))]
        print(f"latency arrival (zone event commit -> store.customer_arrived received, {len(arrived_ms)}): "
              f"p50 {statistics.median(arrived_ms):.1f} ms, p99 {p99:.1f} ms, max {arrived_ms[-1]:.1f} ms")


def _arrival_latencies(engine: Any, runtime: Any, n: int, gap_s: float) -> list[float]:
    """Store-arrival alerts end to end (see the module docstring); ms per alert, in order."""
    from sqlmodel import Session

    from tests.service.campaign_factories import add_customer
    from zones.model import Circle, Zone

    if n <= 0:
        return []
    at = datetime.now(UTC)
    store = start_receiver()
    store_zone = Zone(id="store-b", name="Bench store", geometry=Circle(48.8466, 2.4395, 80.0), store_id="B")
    runtime.geofence.save_zones([store_zone], at=at)
    with Session(engine, expire_on_commit=False) as session:
        for i in range(20):
            add_customer(session, at, cid=f"cust-b{i}", device_id=f"dev-b{i}", consents=("store_welcome",))
        _row, store.secret = register_endpoint(session, store.url, ["store.customer_arrived"],
                                               allow_private=True, at=at, zone_ids=["store-b"])
    sent: list[float] = []
    for i in range(n):
        event = ZoneEvent(id=f"arr{i:06d}", zone_id="store-b", device_id=f"dev-b{i % 20}",
                          kind=TransitionKind.ENTER, at=datetime.now(UTC), visit_id=f"vb{i}", reason="bench")
        sent.append(time.perf_counter())
        append(engine, [event], recorded_at=datetime.now(UTC))
        runtime.wakeups.events.set()
        time.sleep(gap_s)
    deadline = time.monotonic() + 60
    while len(store.accepted) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    assert store.bad_signatures == 0
    assert len(store.accepted) == n, f"{len(store.accepted)} of {n} alerts"
    return [(r.at - t) * 1000 for r, t in zip(store.accepted, sent, strict=True)]


if __name__ == "__main__":
    main()
