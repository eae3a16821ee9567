"""``bus.pull`` against nats-py's ``fetch`` (the reference) on the local server: the same messages in the
same reads, the same timeout, a lingering read answered by what is published while it waits."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

import nats
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from geofence.service.bus.partitions import stream_sequence
from geofence.service.bus.pull import pull
from tests.service.bus_support import require_nats

Read = Callable[[JetStreamContext.PullSubscription, int, float], Awaitable[list[Msg]]]


async def _fetch(sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float) -> list[Msg]:
    return await sub.fetch(batch, timeout=timeout_s)


async def _with_stream(test: Callable[[JetStreamContext, str, str], Awaitable[None]]) -> None:
    nc = await nats.connect(require_nats())
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:10]
    stream, subject = f"TEST_PULL_{tag}", f"test.{tag}.pull"
    await js.add_stream(api.StreamConfig(name=stream, subjects=[subject], storage=api.StorageType.MEMORY))
    try:
        await test(js, stream, subject)
    finally:
        await js.delete_stream(stream)
        await nc.close()


async def _consumer(js: JetStreamContext, stream: str, subject: str) -> JetStreamContext.PullSubscription:
    config = api.ConsumerConfig(ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.ALL)
    return await js.pull_subscribe(subject, stream=stream, config=config)


async def _read_all(read: Read, sub: JetStreamContext.PullSubscription, batch: int) -> list[list[tuple]]:
    reads: list[list[tuple]] = []
    while True:
        try:
            msgs = await read(sub, batch, 0.3)
        except TimeoutError:
            return reads
        reads.append([(stream_sequence(m.reply), m.data, dict(m.headers or {})) for m in msgs])


def test_pull_reads_what_fetch_reads_in_the_same_batches() -> None:
    async def test(js: JetStreamContext, stream: str, subject: str) -> None:
        for i in range(1234):
            await js.publish(subject, f"fix {i}".encode() * (1 + i % 7), headers={"Geofence-At": str(i)})
        reference = await _read_all(_fetch, await _consumer(js, stream, subject), 500)
        lean = await _read_all(pull, await _consumer(js, stream, subject), 500)
        assert [len(r) for r in reference] == [500, 500, 234]
        assert lean == reference  # sequences, payloads, headers, and how they were grouped

    asyncio.run(_with_stream(test))


def test_pull_on_an_empty_consumer_times_out_as_fetch_does() -> None:
    async def test(js: JetStreamContext, stream: str, subject: str) -> None:
        for read in (_fetch, pull):
            sub = await _consumer(js, stream, subject)
            started = time.monotonic()
            try:
                await read(sub, 500, 0.4)
            except TimeoutError:
                pass
            else:
                raise AssertionError(f"{read.__name__} returned on an empty stream")
            assert 0.35 <= time.monotonic() - started < 2.0

    asyncio.run(_with_stream(test))


def test_a_waiting_pull_gets_what_is_published_meanwhile_and_leaves_no_request_behind() -> None:
    async def test(js: JetStreamContext, stream: str, subject: str) -> None:
        sub = await _consumer(js, stream, subject)

        async def publish_later() -> None:
            await asyncio.sleep(0.2)
            for i in range(3):
                await js.publish(subject, f"late {i}".encode())

        started = time.monotonic()
        publishing = asyncio.create_task(publish_later())
        got = await pull(sub, 3, 5.0)  # a full batch ends the wait at once
        await publishing
        assert [m.data for m in got] == [b"late 0", b"late 1", b"late 2"]
        assert time.monotonic() - started < 2.0
        # nothing else was asked for: the next message waits for the next read
        await js.publish(subject, b"next")
        await asyncio.sleep(0.2)
        assert sub._sub._pending_queue.empty()
        assert [m.data for m in await pull(sub, 10, 1.0)] == [b"next"]

    asyncio.run(_with_stream(test))
