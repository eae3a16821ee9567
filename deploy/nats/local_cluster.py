"""A 3-node NATS JetStream cluster of local ``nats-server`` processes on loopback ports, run from the same
``cluster.conf`` as compose and Kubernetes — and a failover check on it.

    python deploy/nats/local_cluster.py            # start, create the streams (replicas 3), kill the
                                                   # events stream's leader, keep publishing/consuming;
                                                   # prints one JSON line, exits 1 when something is lost

``tests/service/test_deploy_cluster.py`` runs it; ``bench/bench_stream.py`` uses ``start_cluster`` for the
R3 publish rate. Needs ``nats-server`` (2.9+) on PATH and this repository's package installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

CONF = Path(__file__).with_name("cluster.conf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor_port}/healthz", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False


@dataclass
class Cluster:
    nodes: list[Node] = field(default_factory=list)

    @property
    def urls(self) -> str:
        """Every node, comma-separated: what ``GEOFENCE_BUS`` is set to."""
        return ",".join(n.url for n in self.nodes)

    def start(self, node: Node) -> None:
        env = {**os.environ, "NATS_SERVER_NAME": node.name, "NATS_HOST": "127.0.0.1",
               "NATS_CLIENT_PORT": str(node.client_port), "NATS_CLUSTER_PORT": str(node.cluster_port),
               "NATS_MONITOR_PORT": str(node.monitor_port), "NATS_STORE_DIR": str(node.store_dir)}
        for i, other in enumerate(self.nodes, 1):
            env[f"NATS_ROUTE_{i}"] = f"nats-route://127.0.0.1:{other.cluster_port}"
        with node.log.open("ab") as out:
            node.proc = subprocess.Popen([nats_server(), "-c", str(CONF)], env=env, stdout=out,
                                         stderr=subprocess.STDOUT)

    def kill(self, name: str) -> Node:
        """``kill -9`` one node (its files stay: it can be started again)."""
        node = next(n for n in self.nodes if n.name == name)
        assert node.proc is not None
        os.kill(node.proc.pid, signal.SIGKILL)
        node.proc.wait(10)
        node.proc = None
        return node

    def wait_healthy(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(n.healthy() for n in self.nodes if n.proc is not None):
                return
            time.sleep(0.1)
        raise TimeoutError("cluster not healthy: see the nodes' logs")

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)


def nats_server() -> str:
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/bin")
    if found is None:
        raise FileNotFoundError("nats-server is not installed (https://github.com/nats-io/nats-server)")
    return found


@contextmanager
def start_cluster(workdir: Path, size: int = 3) -> Iterator[Cluster]:
    """``size`` nodes on free loopback ports, healthy (JetStream up, routes formed) when yielded."""
    cluster = Cluster([
        Node(f"nats-{i}", _free_port(), _free_port(), _free_port(), workdir / f"nats-{i}",
             workdir / f"nats-{i}.log")
        for i in range(1, size + 1)
    ])
    try:
        for node in cluster.nodes:
            cluster.start(node)
        cluster.wait_healthy()
        yield cluster
    finally:
        cluster.stop()


def _retrying(call, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    """``call()`` until it succeeds: during a leader election JetStream answers with errors briefly."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return call()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def failover_check(workdir: Path, *, per_phase: int = 1000) -> dict[str, object]:
    """Create the events stream (replicas 3), publish and consume, kill its leader, publish and consume
    again; the counts say whether anything was lost or repeated."""
    from datetime import UTC, datetime

    from nats.js import api

    from geofence.events import TransitionKind, ZoneEvent
    from geofence.service.event_stream import encode_event, stream_config
    from geofence.service.nats_bridge import NatsBridge, Outgoing
    from geofence.service.settings import EventStreamSettings

    conf = EventStreamSettings(replicas=3)
    consumer = api.ConsumerConfig(
        durable_name="campaigns", name="campaigns", ack_wait=5.0, max_deliver=-1,
        ack_policy=api.AckPolicy.EXPLICIT, filter_subject=f"{conf.subject_prefix}.>",
    )

    def batch(first: int) -> list[Outgoing]:
        at = datetime.now(UTC)
        return [Outgoing(f"{conf.subject_prefix}.enter", encode_event(ZoneEvent(
            id=f"ev-{i:06d}", zone_id="store", device_id=f"dev-{i}", kind=TransitionKind.ENTER, at=at,
            visit_id=f"v-{i}", reason="check")), f"ev-{i:06d}") for i in range(first, first + 100)]

    consumed: list[str] = []

    def consume(bridge: NatsBridge, until: int) -> None:
        deadline = time.monotonic() + 60
        while len(set(consumed)) < until and time.monotonic() < deadline:
            try:
                got = bridge.fetch(conf.name, consumer, batch=100, timeout_s=1.0)
                bridge.settle([d.msg for d in got], [], [])
            except Exception:  # a leader election in progress: pull again
                time.sleep(0.2)
                continue
            consumed.extend(json.loads(d.data)["id"] for d in got)

    with start_cluster(workdir) as cluster:
        bridge = NatsBridge(cluster.urls, name="failover-check")
        try:
            info = _retrying(lambda: bridge.ensure_stream(stream_config(conf)))
            for first in range(0, per_phase, 100):
                bridge.publish_all(batch(first))
            consume(bridge, per_phase // 2)
            info = bridge.call(bridge.js.stream_info(conf.name))
            leader = info.cluster.leader
            replicas_before = 1 + len(info.cluster.replicas or [])
            cluster.kill(leader)
            killed_at = time.monotonic()
            for first in range(per_phase, 2 * per_phase, 100):
                _retrying(lambda f=first: bridge.publish_all(batch(f)))  # type: ignore[misc]
            failover_s = time.monotonic() - killed_at
            consume(bridge, 2 * per_phase)
            info = _retrying(lambda: bridge.call(bridge.js.stream_info(conf.name)))
            return {
                "nodes": len(cluster.nodes), "replicas": replicas_before, "killed_leader": leader,
                "new_leader": info.cluster.leader, "published": 2 * per_phase,
                "stored": int(info.state.messages), "consumed_unique": len(set(consumed)),
                "consumed_total": len(consumed), "publish_after_kill_s": round(failover_s, 2),
            }
        finally:
            bridge.close()


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="nats-cluster-") as tmp:
        result = failover_check(Path(tmp))
    sys.stdout.write(json.dumps(result) + "\n")
    ok = result["stored"] == result["published"] == result["consumed_unique"] and result["replicas"] == 3
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
