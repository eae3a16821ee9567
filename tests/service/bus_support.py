"""NATS for the bus tests: the local server (skipped without one, required under CI), a stream, subject
and lease bucket of each test's own, a ``nats-server`` of a test's own, and "has every partition been
ingested up to the end of the stream?"."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from geofence.service.bus.link import NatsLink
from geofence.service.bus.worker import run_until_stopped
from geofence.service.runtime import bootstrap
from geofence.service.settings import PartitionedIngestSettings, Settings
from tests.conftest import IN_CI
from tests.service.processes import free_port

LOCAL_NATS = os.environ.get("GEOFENCE_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


def _reachable(url: str) -> str | None:
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        with socket.create_connection((host, int(port or 4222)), timeout=2):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def require_nats_server() -> str:
    """The ``nats-server`` binary, for tests that run one of their own (skipped without; CI has it)."""
    if not Path(NATS_SERVER).exists():
        if IN_CI:
            pytest.fail(f"{NATS_SERVER} is required under CI=true")
        pytest.skip(f"no nats-server at {NATS_SERVER}")
    return NATS_SERVER


def require_nats() -> str:
    """The local NATS URL; skip without a server (fail under CI, where one must run)."""
    problem = _reachable(LOCAL_NATS)
    if problem:
        if IN_CI:
            pytest.fail(f"NATS with JetStream is required under CI=true but is not reachable: {problem}")
        pytest.skip(f"NATS not reachable at {LOCAL_NATS} ({problem})")
    return LOCAL_NATS


def own_names(partitions: int = 8, lease_s: float = 2.0) -> PartitionedIngestSettings:
    """A stream, subject and bucket no other test uses (tests share the local server)."""
    tag = uuid.uuid4().hex[:10]
    return PartitionedIngestSettings(
        partitions=partitions, stream=f"TEST_FIXES_{tag}", subject=f"test.{tag}.fixes",
        lease_bucket=f"test_leases_{tag}", lease_s=lease_s,
    )


def bus_env(url: str, config: PartitionedIngestSettings) -> dict[str, str]:
    """The settings above as the environment of a ``geofence`` process."""
    return {
        "GEOFENCE_BUS": url,
        **{f"GEOFENCE_PARTITIONED__{k.upper()}": str(v) for k, v in config.model_dump().items()},
    }


async def _drop(url: str, config: PartitionedIngestSettings) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    for coro in (js.delete_stream(config.stream), js.delete_key_value(config.lease_bucket)):
        try:
            await coro
        except Exception:  # never created
            pass
    await nc.close()


def drop_names(url: str, config: PartitionedIngestSettings) -> None:
    asyncio.run(_drop(url, config))


async def _last_seqs(url: str, config: PartitionedIngestSettings) -> dict[int, int]:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(url)
    js = nc.jetstream()
    out: dict[int, int] = {}
    for p in range(config.partitions):
        try:
            msg = await js.get_last_msg(config.stream, f"{config.subject}.{p}")
            out[p] = int(msg.seq or 0)
        except NotFoundError:
            out[p] = 0
    await nc.close()
    return out


def wait_drained(
    url: str, config: PartitionedIngestSettings, database_url: str, timeout_s: float = 60
) -> None:
    """Until every partition's checkpoint has reached the stream's last message on its subject."""
    last = asyncio.run(_last_seqs(url, config))
    engine = create_engine(database_url)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            with engine.connect() as conn:
                done = dict(conn.execute(text("SELECT partition, stream_seq FROM ingest_partitions")).all())
            behind = {p: s for p, s in last.items() if s and done.get(p, 0) < s}
            if not behind:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"partitions not drained: {behind} (checkpoints {done})")
            time.sleep(0.1)
    finally:
        engine.dispose()


@dataclass
class Bus:
    url: str
    config: PartitionedIngestSettings


def settings_for(tmp_path: Path, database_url: str, bus: Bus | None) -> Settings:
    return Settings(
        env="test", hash_key="test-hash-key-not-secret", public_base_url="http://127.0.0.1:8000",
        database_url=database_url, outbox_dir=tmp_path / "outbox", export_dir=tmp_path / "exports",
        scheduler={"enabled": False}, auth_required=False, migrate_on_start=False,
        limits={"store": "memory", "key_rate_per_s": 0, "device_rate_per_s": 0},
        bus=bus.url if bus else "", partitioned=bus.config if bus else PartitionedIngestSettings(),
    )


@contextmanager
def ingest_worker(settings: Settings) -> Iterator[None]:
    """A worker on a thread of this process, as ``geofence ingest-worker`` runs it."""
    runtime = bootstrap(settings.model_copy(update={"bus": ""}))
    link = NatsLink(settings.bus, settings.partitioned)
    stop = threading.Event()
    thread = threading.Thread(target=run_until_stopped, args=(runtime.geofence, link, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
        link.close()
        runtime.engine.dispose()


class NatsServer:
    """A ``nats-server`` with JetStream of a test's own, on a free loopback port and its own store, to be
    killed and started again on the same port and store; stopped by pid."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = workdir / f"nats-{self.port}"
        self.store.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"nats-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.store)],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while _reachable(self.url) and time.monotonic() < deadline:
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@contextmanager
def own_nats_server(workdir: Path) -> Iterator[NatsServer]:
    server = NatsServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.kill()
