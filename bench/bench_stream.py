"""Bus benchmark: the figures docs/scaling.md's sizing model is built from.

    .venv/bin/python -m bench.bench_stream            # 40,000 messages per run
    .venv/bin/python -m bench.bench_stream --quick    # 5,000

On loopback, with throw-away ``nats-server`` processes (one node for R1; three, from
deploy/nats/cluster.conf, for R3) and a throw-away PostgreSQL database:

- JetStream publish rate, R1 and R3, file storage: one Python client, pipelined (``publish_async`` in
  windows of ``--window``, then every acknowledgement awaited), for fix messages of 1 and of 10 fixes
  (msgpack, as the partitioned ingest sends them) and for zone-event messages (JSON, as the relay sends);
- bytes per message on the wire and in the stream (``stream_info``: payload, subject and headers);
- pull-consumer rate (fetch 500, ack each) R1 and R3;
- PostgreSQL: zone events appended to the log (``event_log.append``, 100 per transaction), events/s;
- the relay end to end: log rows to stream (R1), events/s;
- campaign decisions by 1 and 2 real ``geofence worker`` processes reading the stream (R1, PostgreSQL):
  decisions/s, and the workers' CPU per decision (in the client column).

The client is one Python process: rates are the client's ceiling as much as the server's; its CPU
seconds are printed next to each. Run on a quiet machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
from nats.js import api  # noqa: E402

from geofence.events import TransitionKind, ZoneEvent  # noqa: E402
from geofence.fixes import LocationFix  # noqa: E402
from geofence.service.event_stream import encode_event  # noqa: E402
from geofence.service.nats_bridge import NatsBridge  # noqa: E402
from geofence.service.settings import EventStreamSettings  # noqa: E402

_spec = importlib.util.spec_from_file_location("local_cluster", ROOT / "deploy" / "nats" / "local_cluster.py")
assert _spec is not None
assert _spec.loader is not None
local_cluster = importlib.util.module_from_spec(_spec)
sys.modules["local_cluster"] = local_cluster  # its dataclasses look their module up
_spec.loader.exec_module(local_cluster)

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def fix_payload(i: int, fixes: int) -> bytes:
    return msgspec.msgpack.encode([
        LocationFix(device_id=f"device-{i:08d}-{k}", lat=48.8566 + k * 1e-4, lng=2.3522, accuracy_m=12.0,
                    recorded_at=T0 + timedelta(seconds=i))
        for k in range(fixes)
    ])


def event_payload(i: int) -> bytes:
    return encode_event(ZoneEvent(
        id=uuid.UUID(int=i).hex, zone_id="store-0001", device_id=f"device-{i:08d}", kind=TransitionKind.ENTER,
        at=T0, visit_id=uuid.UUID(int=i + 1).hex, reason="enter_margin", lat=48.857, lng=2.352))


def server_cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds the server processes have used so far (/proc/<pid>/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def publish_rate(bridge: NatsBridge, stream: str, subject: str, make: Callable[[int], bytes], n: int,
                 window: int, replicas: int, pids: list[int]) -> dict[str, float]:
    bridge.ensure_stream(api.StreamConfig(name=stream, subjects=[f"{subject}.>"], num_replicas=replicas,
                                          storage=api.StorageType.FILE, duplicate_window=120.0))
    payloads = [make(i) for i in range(n)]
    headers = {"Geofence-At": T0.isoformat()}

    async def run() -> None:
        for start in range(0, n, window):
            futures = [await bridge.js.publish_async(f"{subject}.{i % 16}", payloads[i],
                                                     headers={"Nats-Msg-Id": f"{stream}-{i}", **headers})
                       for i in range(start, min(n, start + window))]
            await asyncio.gather(*futures)

    cpu, wall, server = time.process_time(), time.perf_counter(), server_cpu_s(pids)
    bridge.call(run(), timeout_s=600)
    wall, cpu, server = time.perf_counter() - wall, time.process_time() - cpu, server_cpu_s(pids) - server
    state = bridge.call(bridge.js.stream_info(stream)).state
    return {"msgs_per_s": n / wall, "client_cpu_us": cpu / n * 1e6, "payload_b": len(payloads[0]),
            "server_cpu_us_per_msg": server / n * 1e6,
            "stored_b_per_msg": state.bytes / max(1, state.messages), "stored": state.messages}


def consume_rate(bridge: NatsBridge, stream: str, subject: str, n: int, pids: list[int]) -> dict[str, float]:
    config = api.ConsumerConfig(durable_name="bench", name="bench", ack_policy=api.AckPolicy.EXPLICIT,
                                ack_wait=60.0, max_ack_pending=20000, filter_subject=f"{subject}.>")
    got = 0
    cpu, wall, server = time.process_time(), time.perf_counter(), server_cpu_s(pids)
    while got < n:
        batch = bridge.fetch(stream, config, batch=500, timeout_s=2.0)
        if not batch:
            break
        bridge.settle([d.msg for d in batch], [], [])
        got += len(batch)
    wall, cpu, server = time.perf_counter() - wall, time.process_time() - cpu, server_cpu_s(pids) - server
    return {"msgs_per_s": got / wall, "client_cpu_us": cpu / max(1, got) * 1e6, "consumed": got,
            "server_cpu_us_per_msg": server / max(1, got) * 1e6}


def single_node(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = local_cluster._free_port()
    store = str(workdir / "r1")
    command = [local_cluster.nats_server(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", store]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, f"nats://127.0.0.1:{port}"


Row = tuple[str, dict[str, float]]


def per_message(n: int, wall_s: float, cpu_s: float) -> dict[str, float]:
    return {"msgs_per_s": n / wall_s, "client_cpu_us": cpu_s / n * 1e6}


def bus_runs(url: str, replicas: int, n: int, window: int, pids: list[int]) -> list[Row]:
    bridge = NatsBridge(url, name="bench")
    rows = []
    try:
        for label, make in (("fix msg, 1 fix", lambda i: fix_payload(i, 1)),
                            ("fix msg, 10 fixes", lambda i: fix_payload(i, 10)),
                            ("event msg", event_payload)):
            tag = uuid.uuid4().hex[:8]
            stream, subject = f"BENCH_{tag}", f"bench{tag}"
            figures = publish_rate(bridge, stream, subject, make, n, window, replicas, pids)
            rows.append((f"R{replicas} publish  {label}", figures))
            if label == "event msg":
                rows.append((f"R{replicas} consume  {label}", consume_rate(bridge, stream, subject, n, pids)))
            bridge.call(bridge.js.delete_stream(stream))
    finally:
        bridge.close()
    return rows


def postgres_runs(admin_url: str, nats_url: str, n: int) -> list[tuple[str, dict[str, float]]]:
    from geofence.service.db import make_engine
    from geofence.service.event_log import append
    from geofence.service.event_stream import EventRelay, LazyBridge
    from tests.service.processes import fresh_postgres

    rows = []
    with fresh_postgres(admin_url) as db:
        engine = make_engine(db)
        events = [ZoneEvent(id=uuid.UUID(int=i).hex, zone_id="store-0001", device_id=f"device-{i:08d}",
                            kind=TransitionKind.ENTER, at=T0, visit_id=uuid.UUID(int=i + 1).hex,
                            reason="enter_margin", lat=48.857, lng=2.352) for i in range(n)]
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, n, 100):
            append(engine, events[start : start + 100], recorded_at=T0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(("PostgreSQL append events (100/tx)", per_message(n, wall, cpu)))
        conf = EventStreamSettings(name=f"BENCH_EV_{uuid.uuid4().hex[:8]}",
                                   subject_prefix=f"bench{uuid.uuid4().hex[:8]}.events")
        bridge = LazyBridge(nats_url, name="bench-relay")
        relay = EventRelay(engine, bridge, conf, now=lambda: datetime.now(UTC), batch=500)
        cpu, wall = time.process_time(), time.perf_counter()
        while relay.run_once():
            pass
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        rows.append(("relay log -> stream (R1, 500/batch)", per_message(n, wall, cpu)))
        bridge.get().call(bridge.get().js.delete_stream(conf.name))
        bridge.close()
        engine.dispose()
    return rows


def decision_runs(admin_url: str, nats_url: str, events: int, workers: int) -> list[Row]:
    """``workers`` real ``geofence worker`` processes deciding ``events`` ENTER events from the stream
    (campaign consumer on PostgreSQL): decisions/s from the first to the last, workers' CPU per decision."""
    from geofence.service.db import make_engine
    from geofence.service.event_log import append
    from tests.service import processes

    conf_tag = uuid.uuid4().hex[:8]
    with processes.fresh_postgres(admin_url) as db, tempfile.TemporaryDirectory(prefix="bench-dec-") as tmp:
        processes.seed_world(db, events)
        env = processes.process_env(db, Path(tmp), GEOFENCE_BUS=nats_url,
                                    GEOFENCE_EVENT_STREAM__NAME=f"BD_{conf_tag}",
                                    GEOFENCE_EVENT_STREAM__SUBJECT_PREFIX=f"bd{conf_tag}.events")
        procs = [processes.start_worker(env, Path(tmp) / f"w{i}.log") for i in range(workers)]
        try:
            time.sleep(3)  # imports; their CPU is counted from here
            cpu0 = server_cpu_s([p.pid for p in procs])
            engine = make_engine(db)
            at = datetime.now(UTC)
            for start in range(0, events, 100):
                append(engine, [ZoneEvent(id=f"ev-{i:06d}", zone_id=processes.ZONE_ID, device_id=f"dev-{i}",
                                          kind=TransitionKind.ENTER, at=at, visit_id=f"v-{i}", reason="bench")
                                for i in range(start, min(events, start + 100))], recorded_at=at)
            engine.dispose()
            first = last = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                done = len(processes.decided(db))
                if done and first is None:
                    first = (time.perf_counter(), done)
                if done >= events:
                    last = time.perf_counter()
                    break
                time.sleep(0.05)
            cpu = server_cpu_s([p.pid for p in procs]) - cpu0
        finally:
            for p in procs:
                processes.stop(p)
    if first is None or last is None:
        raise RuntimeError("not every event was decided")
    rate = (events - first[1]) / max(1e-9, last - first[0])
    # the workers' CPU goes in the client column: it is what an event worker spends per decision
    return [(f"decide from stream, {workers} worker(s)", {"msgs_per_s": rate,
                                                          "client_cpu_us": cpu / events * 1e6})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--window", type=int, default=1000, help="publishes in flight before awaiting acks")
    parser.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--decisions", type=int, default=2000, help="events decided by real workers")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5_000 if args.quick else args.messages
    if args.quick:
        args.decisions = 300
    print(f"load average before: {open('/proc/loadavg').read().split()[:3]}  cores: {os.cpu_count()}")
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="bench-bus-") as tmp:
        work = Path(tmp)
        proc, url = single_node(work)
        try:
            rows += bus_runs(url, 1, n, args.window, [proc.pid])
            rows += postgres_runs(args.admin_url, url, n)
            for workers in (1, 2):
                rows += decision_runs(args.admin_url, url, args.decisions, workers)
        finally:
            proc.terminate()
            proc.wait(10)
        (work / "r3").mkdir()
        with local_cluster.start_cluster(work / "r3") as cluster:
            pids = [node.proc.pid for node in cluster.nodes if node.proc is not None]
            rows += bus_runs(cluster.urls, 3, n, args.window, pids)
    nan = float("nan")
    print(f"{'run':38} {'msgs/s':>8} {'client CPU us/msg':>17} {'server CPU us/msg':>17} {'payload B':>9} "
          f"{'stored B/msg':>12}")
    for label, f in rows:
        print(f"{label:38} {f['msgs_per_s']:8,.0f} {f['client_cpu_us']:17.0f} "
              f"{f.get('server_cpu_us_per_msg', nan):17.0f} {f.get('payload_b', nan):9.0f} "
              f"{f.get('stored_b_per_msg', nan):12.0f}")
    print(f"load average after: {open('/proc/loadavg').read().split()[:3]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
