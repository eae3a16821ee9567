"""One NATS connection per process, on an event loop of its own, usable from synchronous code.

nats-py is asyncio-only, while the ingest path runs in plain threads (the location feed's thread, the
CLI). ``NatsLink`` runs the client on a daemon thread's loop; ``call`` submits a coroutine and waits
for it. The loop is uvloop's where it is installed (it is a dependency but on Windows): every fix goes
through this loop twice — published by an API process, read by a worker — and nats-py's socket reads,
parsing and callbacks cost less CPU on it (measured on the local server: a worker's read of a 3 kB
message ~14 against ~22 µs, an API process's 4-message publish and wait ~340 against ~460 µs).
The stream and the lease bucket are created (or found) at connection time, so the first API process or
worker to start on an empty server sets them up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError
from nats.js.kv import KeyValue

from geofence.service.bus.acks import PubAcks
from geofence.service.settings import PartitionedIngestSettings

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed, asyncio's otherwise (the same behaviour, more CPU)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class NatsLink:
    """``url`` as in ``GEOFENCE_BUS`` (comma-separated servers); ``config`` says which stream and bucket."""

    def __init__(self, url: str, config: PartitionedIngestSettings) -> None:
        self.url = url
        self.config = config
        self.loop = new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="nats-link", daemon=True)
        self._thread.start()
        self.nc: Client | None = None
        self.js: JetStreamContext | None = None
        self.leases: KeyValue | None = None
        self.acks = PubAcks()  # the acknowledgements of ``FixPublisher``'s messages
        self._connected = threading.Lock()

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the link's loop and wait for its result (from any other thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def connect(self) -> JetStreamContext:
        """Connect once (thread-safe); later calls return the same JetStream context."""
        with self._connected:
            if self.js is None:
                self.call(self._connect(), timeout_s=30.0)
        assert self.js is not None
        return self.js

    async def _connect(self) -> None:
        servers = [s.strip() for s in self.url.split(",") if s.strip()]
        # reconnects forever: a broker restart must not leave an API process unable to publish
        self.nc = await nats.connect(servers=servers, max_reconnect_attempts=-1, reconnect_time_wait=0.5)
        self.js = self.nc.jetstream(timeout=self.config.publish_timeout_s)
        await ensure_stream(self.js, self.config)
        self.leases = await ensure_lease_bucket(self.js, self.config)
        await self.acks.start(self.nc)

    def close(self) -> None:
        """Drain the connection and stop the loop (the link can be connected again afterwards: no)."""
        if self.loop.is_closed():
            return
        if self.nc is not None and not self.nc.is_closed:
            try:
                self.call(self.nc.drain(), timeout_s=10.0)
            except Exception:  # the broker is away: nothing left to flush
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)
        self.loop.close()


async def ensure_stream(js: JetStreamContext, config: PartitionedIngestSettings) -> None:
    """The fixes stream: file storage, ``replicas`` copies, kept ``max_age_s`` (the replay horizon),
    de-duplicated by ``Nats-Msg-Id`` over ``duplicate_window_s``. Adding an identical stream again is a
    no-op; an existing one is brought to the settings (replicas, limits), as the events stream is. A
    setting JetStream refuses (3 replicas on a single server) fails the connection: no silent downgrade."""
    wanted = api.StreamConfig(
        name=config.stream,
        subjects=[f"{config.subject}.*"],
        storage=api.StorageType.FILE,
        retention=api.RetentionPolicy.LIMITS,
        num_replicas=config.replicas,
        max_age=float(config.max_age_s),
        duplicate_window=config.duplicate_window_s,
    )
    try:
        await js.add_stream(wanted)
    except BadRequestError:  # exists with another configuration
        await js.update_stream(wanted)


async def ensure_lease_bucket(js: JetStreamContext, config: PartitionedIngestSettings) -> KeyValue:
    """The lease bucket: TTL ``lease_s`` and ``replicas`` copies (the leases survive a node's loss); an
    existing bucket made with other ones is brought to them."""
    try:
        return await js.create_key_value(
            bucket=config.lease_bucket, ttl=config.lease_s, replicas=config.replicas
        )
    except BadRequestError:  # exists with another configuration: its stream, updated
        stream = f"KV_{config.lease_bucket}"
        current = (await js.stream_info(stream)).config
        await js.update_stream(current.evolve(num_replicas=config.replicas, max_age=config.lease_s))
        return await js.key_value(config.lease_bucket)
