"""Latency benchmark: a fix posted over HTTP -> the provider's call, on PostgreSQL, real processes.

    .venv/bin/python -m bench.bench_latency                 # 250 in-window ENTERs, one API + a worker
    .venv/bin/python -m bench.bench_latency --root ../base  # the same against another checkout

One ``geofence serve`` API process and one ``geofence worker`` on a fresh PostgreSQL database; the
campaign ``offer`` is always in its window, its customers consent, the channel is the local outbox
(``push.jsonl``, whose ``accepted_at`` is the moment of the provider's call). Each of ``--events``
devices posts one fix at the store's centre (an ENTER), one every ``--gap-ms``; the latency of each is
the provider's ``accepted_at`` minus the time just before the POST (one clock: same machine). Printed:
p50 / p99 / max of the whole path and of its legs (the event's commit as ``recorded_at``, the delivery's
``created_at``). Goal (issue 20): p50 < 50 ms, p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.service import processes  # noqa: E402


def _quantiles(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):7.1f} ms  p99 {p99:7.1f} ms  max {ordered[-1]:7.1f} ms"


def _time(value: object) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def run(admin_url: str, root: Path, events: int, gap_ms: float) -> dict[str, str]:
    processes.ROOT = root  # the processes run that checkout's code
    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    with processes.fresh_postgres(admin_url) as url:
        processes.seed_world(url, events)
        env = processes.process_env(url, work)
        worker = processes.start_worker(env, work / "worker.log")
        try:
            with processes.api_processes(env, work, 1) as (api,), httpx.Client() as client:
                deadline = time.monotonic() + 120
                while b"worker running" not in (work / "worker.log").read_bytes():
                    if time.monotonic() > deadline or worker.poll() is not None:
                        raise RuntimeError(f"the worker did not start: {work / 'worker.log'}")
                    time.sleep(0.1)
                time.sleep(2.0)  # its first passes
                posted: dict[str, float] = {}
                for i in range(events):
                    device = f"dev-{i}"
                    fix = {"device_id": device, "lat": processes.STORE[0], "lng": processes.STORE[1],
                           "accuracy_m": 10.0, "recorded_at": datetime.now(UTC).isoformat()}
                    posted[device] = time.time()
                    answer = client.post(f"{api.url}/v1/locations", json={"fixes": [fix]})
                    answer.raise_for_status()
                    time.sleep(gap_ms / 1000)
                outbox = work / "outbox" / "push.jsonl"
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    if outbox.exists() and len(outbox.read_text().splitlines()) >= events:
                        break
                    time.sleep(0.1)
        finally:
            processes.stop(worker)
        sent = {}
        if outbox.exists():
            for line in outbox.read_text().splitlines():
                record = json.loads(line)
                sent[record["idempotency_key"].split(":", 1)[1]] = _time(record["accepted_at"])
        engine = create_engine(url)
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT e.id, e.device_id, e.recorded_at, d.created_at FROM zone_events e"
                " JOIN deliveries d ON d.event_id = e.id"
            )).all()
        engine.dispose()
    total, to_event, to_delivery, to_provider = [], [], [], []
    for event_id, device, recorded_at, created_at in rows:
        if event_id not in sent:
            continue
        start = posted[device]
        total.append((sent[event_id].timestamp() - start) * 1000)
        to_event.append((_time(recorded_at).timestamp() - start) * 1000)
        to_delivery.append((_time(created_at) - _time(recorded_at)).total_seconds() * 1000)
        to_provider.append((sent[event_id] - _time(created_at)).total_seconds() * 1000)
    return {
        "sent": f"{len(total)} of {events}",
        "fix posted -> provider call": _quantiles(total),
        "  posted -> event (ingest)": _quantiles(to_event),
        "  event -> delivery (consumer)": _quantiles(to_delivery),
        "  delivery -> provider (dispatcher)": _quantiles(to_provider),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--root", type=Path, default=ROOT, help="the checkout whose processes to run")
    parser.add_argument("--events", type=int, default=250)
    parser.add_argument("--gap-ms", type=float, default=50.0)
    args = parser.parse_args()
    for name, value in run(args.admin_url, args.root.resolve(), args.events, args.gap_ms).items():
        print(f"{name:36s} {value}")


if __name__ == "__main__":
    main()
