"""Reading a batch from a partition's pull consumer: nats-py's ``fetch``, without its cost per message.

``PullSubscription.fetch(n)`` waits for each message of the batch with ``Subscription.next_msg``: a
``uuid4``, a task and an ``asyncio.wait_for`` (a future and a timer) per message. Measured on the local
server with 3 kB messages, that is ~4x the CPU of taking them off the subscription's queue (~98 against
~24 µs a message, the rest being nats-py's parsing), and a worker reads every fix through it.

``pull`` makes the same requests as ``fetch`` and returns the same messages: what an earlier read left
queued first; otherwise a ``no_wait`` request for ``batch`` (the server sends what it holds, then a
"404 No Messages" status when that was fewer), and when that brought nothing a lingering request that
expires within the timeout, read until ``batch`` messages, a status that ends the request (408 when it
expired) or the timeout. Idle heartbeats are skipped, as every status is when messages came. Nothing
came: ``TimeoutError``, as ``fetch`` raises, and not before the timeout (a consumer that answers every
request with a status at once would otherwise make a reader spin). No request outlives a read, so a
reader never has more than ``batch`` messages on the way (the read-ahead bound of ``bus/worker.py``).

It reads the subscription's queue and request subjects (``_sub``, ``_nms``, ``_deliver``: nats-py
internals, checked by ``tests/service/test_bus_pull.py`` against ``fetch`` itself); ``fetch`` stays the
reference.
"""

from __future__ import annotations

import asyncio
import json

from nats.aio.msg import Msg
from nats.js import JetStreamContext

STATUS = "Status"
HEARTBEAT = "100"
EXPIRY_MARGIN_S = 0.0001  # the server's 408 comes before the local timeout (as ``fetch`` does)


def _status(msg: Msg) -> str | None:
    headers = msg.headers
    return headers.get(STATUS) if headers and not msg.data else None


def _queued(sub: JetStreamContext.PullSubscription, queue: asyncio.Queue[Msg], room: int) -> list[Msg]:
    """What is already queued (an earlier read's rest), statuses of earlier requests left out."""
    msgs: list[Msg] = []
    inner = sub._sub
    while len(msgs) < room and not queue.empty():
        msg = queue.get_nowait()
        inner._pending_size -= len(msg.data)
        if _status(msg) is None:
            msgs.append(msg)
    return msgs


async def _request(sub: JetStreamContext.PullSubscription, batch: int, expires_s: float | None) -> None:
    request: dict[str, object] = {"batch": batch}
    if expires_s is None:
        request["no_wait"] = True
    else:
        request["expires"] = int(expires_s * 1_000_000_000)
    await sub._nc.publish(sub._nms, json.dumps(request).encode(), sub._deliver)


async def _collect(
    sub: JetStreamContext.PullSubscription, queue: asyncio.Queue[Msg], msgs: list[Msg], batch: int
) -> None:
    """Append messages until ``batch`` or a status that ends the request (the caller bounds the time)."""
    inner = sub._sub
    while len(msgs) < batch:
        msg = await queue.get()  # no suspension while messages are queued
        inner._pending_size -= len(msg.data)
        status = _status(msg)
        if status is None:
            msgs.append(msg)
        elif status != HEARTBEAT:  # 404 no messages, 408 expired, 409 ...: the request is over
            return


async def pull(sub: JetStreamContext.PullSubscription, batch: int, timeout_s: float) -> list[Msg]:
    """Up to ``batch`` messages of the consumer (at least one), or ``TimeoutError`` within ``timeout_s``."""
    queue = sub._sub._pending_queue
    msgs = _queued(sub, queue, batch)
    if msgs:
        return msgs
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    await _request(sub, batch, None)
    try:
        async with asyncio.timeout_at(deadline):
            await _collect(sub, queue, msgs, batch)
    except TimeoutError:
        if not msgs:
            raise
        return msgs
    if msgs:
        return msgs
    left = deadline - loop.time() - EXPIRY_MARGIN_S
    if left <= 0:
        raise TimeoutError
    await _request(sub, batch, left)
    try:
        async with asyncio.timeout_at(deadline):
            await _collect(sub, queue, msgs, batch)
    except TimeoutError:
        pass
    if not msgs:  # ended by a status (the consumer gone...): the timeout's pace, as ``fetch`` keeps
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        raise TimeoutError
    return msgs
