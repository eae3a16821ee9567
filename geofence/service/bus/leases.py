"""Which worker ingests which partition: leases in a JetStream key-value bucket.

The bucket's TTL is the lease (``partitioned.lease_s``): a key not written again within it is gone.
Each worker writes ``w.<worker id>`` (it is alive) and, for each partition it owns, ``p.<partition>``
with its id, every third of the lease. A partition is taken with ``create`` (refused while someone
holds it) and renewed with ``update(last=<revision>)`` (refused once someone else took it after the
lease ran out), so at most one worker believes it owns a partition at a time — up to one renewal
period, which the checkpoint's conditional write (``checkpoint.move_checkpoints``) covers.

Balance: each worker aims at ``ceil(partitions / live workers)`` partitions: it takes free ones up to
that and gives back (after the batch in hand) what it holds beyond it, so a new worker gets a share and
a dead one's partitions are taken by the others once its leases expire.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random

from nats.js.errors import APIError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)


class PartitionLeases:
    def __init__(self, kv: KeyValue, worker_id: str, partitions: int) -> None:
        self.kv = kv
        self.worker_id = worker_id
        self.partitions = partitions
        self.owned: dict[int, int] = {}  # partition -> revision of our lease key
        self._rng = random.Random(worker_id)
        # A renewal and a give-back never interleave: a release landing while the renewal of its
        # partition is in flight would either fail the renewal (the key deleted under it) or be undone
        # by it (the partition renewed after its reader stopped: held, never read again).
        self._turn = asyncio.Lock()

    async def beat(self) -> tuple[set[int], set[int], set[int]]:
        """Renew, balance and take. Returns (gained, lost, surplus): partitions to start consuming,
        to stop consuming at once, and to give back (``release``) after the batch in hand."""
        async with self._turn:
            return await self._beat()

    async def _beat(self) -> tuple[set[int], set[int], set[int]]:
        me = self.worker_id.encode()
        await self.kv.put(f"w.{self.worker_id}", b"alive")
        lost: set[int] = set()
        for partition, revision in list(self.owned.items()):
            try:
                self.owned[partition] = await self.kv.update(f"p.{partition}", me, last=revision)
            except KeyWrongLastSequenceError:
                del self.owned[partition]
                lost.add(partition)
                log.warning("lease of partition %d lost (it ran out and another worker took it)", partition)
        target = math.ceil(self.partitions / await self._live_workers())
        gained: set[int] = set()
        free = [p for p in range(self.partitions) if p not in self.owned]
        self._rng.shuffle(free)  # workers starting together do not all race for partition 0
        for partition in free:
            if len(self.owned) >= target:
                break
            try:
                self.owned[partition] = await self.kv.create(f"p.{partition}", me)
            except KeyWrongLastSequenceError:
                continue  # held by another worker
            gained.add(partition)
        surplus = set(sorted(self.owned)[target:]) if len(self.owned) > target else set()
        return gained, lost, surplus

    async def release(self, partition: int) -> None:
        """Give a partition back now (its checkpoint is committed): the next owner need not wait."""
        async with self._turn:
            await self._release(partition)

    async def _release(self, partition: int) -> None:
        revision = self.owned.pop(partition, None)
        if revision is not None:
            try:
                await self.kv.delete(f"p.{partition}", last=revision)
            except APIError:  # wrong last sequence: already someone else's
                pass

    async def release_all(self) -> None:
        async with self._turn:
            for partition in list(self.owned):
                await self._release(partition)
            await self.kv.delete(f"w.{self.worker_id}")

    async def _live_workers(self) -> int:
        try:
            keys = await self.kv.keys()
        except NoKeysError:
            return 1
        return max(1, sum(1 for k in keys if k.startswith("w.")))
