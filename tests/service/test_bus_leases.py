"""Leases on the local NATS server's key-value store: a partition given back while a renewal is in flight
is either given back or taken again as new, never held unread (``PartitionLeases`` serialises them)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from geofence.service.bus.leases import PartitionLeases
from geofence.service.bus.link import ensure_lease_bucket
from geofence.service.settings import PartitionedIngestSettings
from tests.service.bus_support import drop_names, own_names, require_nats


class RenewalHook:
    """The bucket, with ``hook`` started while the renewal of ``key`` is in flight: before its write
    reaches the server (``first``) or after."""

    def __init__(self, kv: KeyValue, key: str, hook: Callable[[], Awaitable[None]], *, first: bool) -> None:
        self.kv, self.key, self.hook, self.first = kv, key, hook, first
        self.started: asyncio.Future[None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)

    async def update(self, key: str, value: bytes, last: int | None = None) -> int:
        if key != self.key or self.started is not None:
            return await self.kv.update(key, value, last=last)
        if self.first:
            self.started = asyncio.ensure_future(self.hook())
            await asyncio.sleep(0.2)  # the release, unhindered, is done by now
            return await self.kv.update(key, value, last=last)
        revision = await self.kv.update(key, value, last=last)
        self.started = asyncio.ensure_future(self.hook())
        await asyncio.sleep(0.2)
        return revision


async def _give_back_during_a_renewal(
    url: str, config: PartitionedIngestSettings, first: bool
) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        kv = await ensure_lease_bucket(nc.jetstream(), config)
        leases = PartitionLeases(kv, "w1", config.partitions)
        await leases.beat()
        assert 0 in leases.owned
        racing = RenewalHook(kv, "p.0", lambda: leases.release(0), first=first)
        leases.kv = racing  # type: ignore[assignment]
        outcome = await leases.beat()
        assert racing.started is not None
        await racing.started
        try:
            holder = (await kv.get("p.0")).value
        except KeyNotFoundError:
            holder = None
        return {"gained": outcome[0], "owned": set(leases.owned), "holder": holder}
    finally:
        await nc.close()


@pytest.mark.parametrize("first", [True, False], ids=["release-before-the-write", "release-after-the-write"])
def test_a_partition_given_back_during_a_renewal_is_not_held_unread(first: bool) -> None:
    url = require_nats()
    config = own_names(partitions=4, lease_s=30.0)
    try:
        got = asyncio.run(_give_back_during_a_renewal(url, config, first))
    finally:
        drop_names(url, config)
    # given back: not ours any more; or taken again by the beat: then as gained, so it is read again
    if 0 in got["owned"]:
        assert 0 in got["gained"] and got["holder"] == b"w1", got
    else:
        assert got["holder"] != b"w1", got
