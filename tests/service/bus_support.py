"""NATS for the bus tests: the local server (skipped without one, required under CI), a stream, subject
and lease bucket of each test's own, a ``nats-server`` of a test's own, and "has every partition been
ingested up to the end of the stream?"."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from geofence.service.settings import PartitionedIngestSettings
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


@contextmanager
def own_nats_server(workdir: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A ``nats-server`` with JetStream of the test's own (to stop, restart or kill), stopped by pid."""
    port = free_port()
    store = workdir / f"nats-{port}"
    store.mkdir(parents=True, exist_ok=True)
    log = (workdir / f"nats-{port}.log").open("wb")
    proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"nats://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while _reachable(url) and time.monotonic() < deadline:
            time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
        log.close()
