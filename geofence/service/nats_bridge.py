"""A blocking face on the official asyncio NATS client, for the worker's threads.

Our loops, handlers and the database are synchronous (the SDKs are); ``nats-py`` is asyncio. One
``NatsBridge`` per process runs the client's event loop in a daemon thread and hands coroutines to it
with ``run_coroutine_threadsafe``, so a loop thread calls ``bridge.fetch(...)`` like any blocking call.
API references: nats-py ``JetStreamContext.publish_async`` / ``pull_subscribe`` / ``PullSubscription.fetch``,
``Msg.ack`` / ``nak(delay=)`` / ``term`` and ``Msg.metadata.num_delivered``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import BadRequestError
from nats.js.errors import NotFoundError as JsNotFoundError

T = TypeVar("T")
CALL_TIMEOUT_S = 30.0  # no blocking call waits longer for the client's loop (a dead server: reconnecting)


@dataclass(frozen=True)
class Outgoing:
    """A message to publish: ``msg_id`` becomes ``Nats-Msg-Id`` (JetStream drops a repeat within the
    stream's duplicate window)."""

    subject: str
    data: bytes
    msg_id: str
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class Delivery:
    """A message pulled from a durable consumer: ``delivered`` counts this one (1 = first delivery)."""

    msg: Msg
    data: bytes
    headers: dict[str, str]
    delivered: int
    stream_seq: int


class NatsBridge:
    """One connection (a comma-separated list of cluster URLs) and its loop thread."""

    def __init__(self, url: str, *, name: str = "geofence") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-client", daemon=True)
        self._thread.start()
        servers = [u.strip() for u in url.split(",") if u.strip()]
        # reconnect forever: a cluster node restarting must not end the worker (blocking calls time out)
        self.nc: Client = self.call(nats.connect(servers=servers, name=name, max_reconnect_attempts=-1,
                                                 reconnect_time_wait=0.5, connect_timeout=5))
        self.js: JetStreamContext = self.nc.jetstream(timeout=10.0)
        self._subs: dict[tuple[str, str], JetStreamContext.PullSubscription] = {}

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = CALL_TIMEOUT_S) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def close(self) -> None:
        try:
            self.call(self.nc.close(), timeout_s=5.0)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()

    # -- streams ----------------------------------------------------------------------------------
    def ensure_stream(self, config: api.StreamConfig) -> api.StreamInfo:
        """Create the stream, or bring an existing one to ``config`` (replicas, limits): idempotent,
        so every process may call it at start."""
        async def ensure() -> api.StreamInfo:
            try:
                return await self.js.add_stream(config)
            except BadRequestError:  # exists with another configuration
                return await self.js.update_stream(config)
        return self.call(ensure())

    def publish_all(self, messages: Sequence[Outgoing], *, timeout_s: float = 10.0) -> list[api.PubAck]:
        """Publish in order on one connection (so the stream keeps their order), pipelined, then wait
        for every acknowledgement: when this returns, JetStream has stored them all (or already had
        them: ``PubAck.duplicate``). Raises when any was not acknowledged."""
        async def publish() -> list[api.PubAck]:
            futures = []
            for m in messages:
                headers = {"Nats-Msg-Id": m.msg_id, **(m.headers or {})}
                futures.append(await self.js.publish_async(m.subject, m.data, headers=headers,
                                                           wait_stall=timeout_s))
            return list(await asyncio.wait_for(asyncio.gather(*futures), timeout_s))
        return self.call(publish(), timeout_s=timeout_s + 5.0)

    # -- durable pull consumers --------------------------------------------------------------------
    def fetch(
        self, stream: str, config: api.ConsumerConfig, *, batch: int, timeout_s: float
    ) -> list[Delivery]:
        """Up to ``batch`` messages for the durable consumer ``config.durable_name`` (created on first
        use, shared by every process that names it); [] when none came within ``timeout_s``."""
        durable = config.durable_name or ""
        async def pull() -> list[Delivery]:
            sub = self._subs.get((stream, durable))
            if sub is None:
                sub = await self._subscribe(stream, config)
                self._subs[(stream, durable)] = sub
            try:
                msgs = await sub.fetch(batch, timeout=timeout_s)
            except TimeoutError:  # nats.errors.TimeoutError subclasses asyncio's (= builtin) one
                return []
            return [_delivery(m) for m in msgs]
        return self.call(pull(), timeout_s=timeout_s + CALL_TIMEOUT_S)

    async def _subscribe(self, stream: str, config: api.ConsumerConfig) -> JetStreamContext.PullSubscription:
        durable = config.durable_name or ""
        try:
            await self.js.consumer_info(stream, durable)
        except JsNotFoundError:
            try:
                await self.js.add_consumer(stream, config)
            except BadRequestError:  # another process created it first, with this same configuration
                pass
        return await self.js.pull_subscribe_bind(durable=durable, stream=stream)

    def settle(self, acks: Sequence[Msg], naks: Sequence[tuple[Msg, float]], terms: Sequence[Msg]) -> None:
        """Acknowledge handled messages, ask for the failed ones again after a delay (seconds), and
        stop the parked ones; then flush, so the server has them before the next pull."""
        async def settle() -> None:
            for msg in acks:
                await msg.ack()
            for msg, delay_s in naks:
                await msg.nak(delay=delay_s)
            for msg in terms:
                await msg.term()
            await self.nc.flush()
        self.call(settle())

    def consumer_pending(self, stream: str, durable: str) -> tuple[int, int]:
        """(messages not yet delivered, delivered but not acknowledged) of a durable consumer."""
        info = self.call(self.js.consumer_info(stream, durable))
        return int(info.num_pending or 0), int(info.num_ack_pending or 0)


def _delivery(msg: Msg) -> Delivery:
    meta = msg.metadata
    return Delivery(msg=msg, data=msg.data, headers=dict(msg.headers or {}), delivered=meta.num_delivered,
                    stream_seq=meta.sequence.stream)
