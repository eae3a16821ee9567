"""``geofence ingest-worker``: ingest the partitions this process holds a lease on.

Each owned partition has a reader: from the partition's checkpoint (``ingest_partitions``) it reads the
stream with an ephemeral pull consumer (no acknowledgements: the checkpoint in PostgreSQL is the only
cursor, committed with the work) into a buffer, at most ``fetch_batch`` messages ahead. One committer
takes what the partitions have buffered (``take``) and steps it through the same ingest as the embedded
path (``GeofenceService``'s ``Ingestor`` and stores: presences cached in memory and validated against
the database's change feed, versioned writes, the zone-event log) in one transaction that also moves
every partition's checkpoint it covers.

Why one transaction for all the partitions: a 100-fix request spans about every partition, so one
partition's message holds a few fixes, and a batch per partition paid the change-feed read, the clock
tick, the checkpoint and the commit for a handful of fixes, 16 times a round; merged, they are paid
once, and the accelerated lane vectorises over the whole batch. A partition that another worker moved
on (``PartitionLost``) fails the batch, which nothing of is committed: that partition is read again
from its checkpoint, the others are taken again at once. Partitions come and go with the leases
(``leases``); a partition taken over starts from its checkpoint with the devices' in-memory tracks of
the partition dropped, since another worker may have moved them on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext, api

from geofence.fixes import LocationFix
from geofence.ingest import IngestOutcome
from geofence.service import clock
from geofence.service.bus.batching import Batch, Entry, take
from geofence.service.bus.checkpoint import (
    CheckpointedUnit,
    Move,
    PartitionLost,
    move_checkpoints,
    read_checkpoint,
)
from geofence.service.bus.leases import PartitionLeases
from geofence.service.bus.link import NatsLink
from geofence.service.bus.partitions import decode, partition_of, stream_sequence, subject_of
from geofence.service.bus.pull import pull
from geofence.service.db import ConnectionUnit
from geofence.service.metrics import ZONE_EVENTS
from geofence.service.wiring.geofence import GeofenceService

log = logging.getLogger(__name__)

FETCH_WAIT_S = 0.5  # a fetch waits this long for a first message
CONSUMER_CHECK_S = 5.0  # a partition read nothing this long: is its consumer still there?
RETRY_AFTER_S = 1.0  # after a failed batch (database down...), before replaying from the checkpoints


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(eq=False)
class Partition:
    number: int
    seq: int = 0  # last stream sequence committed (the checkpoint, as this worker last wrote or read it)
    sub: JetStreamContext.PullSubscription | None = None
    task: asyncio.Task[None] | None = None
    buffer: list[Entry] = field(default_factory=list)  # read after ``seq``, not committed yet
    room: asyncio.Event = field(default_factory=asyncio.Event)  # the committer took some of the buffer
    ready: bool = False  # opened at its checkpoint: the committer may take from it
    reopen: bool = False  # read again from the checkpoint (the buffer was dropped)
    read_at: float = 0.0  # (monotonic) when its consumer last answered
    stopping: bool = False


class IngestWorker:
    def __init__(self, service: GeofenceService, link: NatsLink, *, worker_id: str | None = None) -> None:
        self.service = service
        self.link = link
        self.config = link.config
        self.worker_id = worker_id or new_worker_id()
        self.running: dict[int, Partition] = {}
        self._leaving: set[int] = set()  # partitions being given back
        self._wake = asyncio.Event()  # a reader buffered messages
        self._in_flight: dict[int, Partition] = {}  # the partitions of the batch being committed
        self._committed = asyncio.Condition()  # notified after each batch
        self._rotation = 0
        self.batches = 0  # transactions committed, for tests and the benchmark

    async def run(self, stop: asyncio.Event) -> None:
        """Hold leases and consume until ``stop`` is set; then give every partition back."""
        assert self.link.leases is not None, "connect() first"
        leases = PartitionLeases(self.link.leases, self.worker_id, self.config.partitions)
        closing = asyncio.Event()
        committer = asyncio.create_task(self._commit_loop(closing), name="committer")
        try:
            while not stop.is_set():
                try:
                    gained, lost, surplus = await leases.beat()
                except Exception as exc:  # the broker is away: the checkpoint fences any overlap
                    log.warning("lease renewal failed: %s: %s", type(exc).__name__, exc)
                    gained, lost, surplus = set(), set(), set()
                for number in lost:  # no waiting for the batch in hand: its commit is fenced anyway
                    self._abandon(number)
                for number in surplus:  # given back once the batch in hand is committed
                    if number not in self._leaving:
                        self._leaving.add(number)
                        asyncio.create_task(self._give_back(number, leases))
                for number in gained:
                    self._start(number)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.config.lease_s / 3)
                except TimeoutError:
                    pass
        finally:
            for number in list(self.running):
                await self._stop(number)
            closing.set()
            self._wake.set()
            await committer
            try:
                await leases.release_all()
            except Exception:  # the leases expire on their own
                log.warning("could not release the leases; they expire within %.0f s", self.config.lease_s)

    # -- one partition: its reader -----------------------------------------------------------------
    def _abandon(self, number: int) -> None:
        state = self.running.pop(number, None)
        if state is not None:
            state.stopping = True
            state.room.set()
            log.info("worker %s lost partition %d", self.worker_id, number)

    async def _give_back(self, number: int, leases: PartitionLeases) -> None:
        try:
            await self._stop(number)
            await leases.release(number)
        finally:
            self._leaving.discard(number)

    def _start(self, number: int) -> None:
        """Open and read on a task of its own: opening waits for the ingest lock (the tracks are
        dropped under it), which must never hold up the lease renewals."""
        state = Partition(number)
        self.running[number] = state
        state.task = asyncio.create_task(self._read(state), name=f"partition-{number}")

    async def _stop(self, number: int) -> None:
        """Stop reading; the batch in hand, if it holds this partition, is committed first."""
        state = self.running.get(number)
        if state is None:
            return
        state.stopping = True
        state.room.set()
        if state.task is not None:
            await state.task
        async with self._committed:
            await self._committed.wait_for(lambda: self._in_flight.get(number) is not state)
        self.running.pop(number, None)
        log.info("worker %s left partition %d at stream sequence %d", self.worker_id, number, state.seq)

    async def _read(self, state: Partition) -> None:
        loop = asyncio.get_running_loop()
        await self._reopen(state)
        log.info("worker %s took partition %d at stream sequence %d", self.worker_id, state.number, state.seq)
        while not state.stopping:
            if state.reopen:
                await self._reopen(state)
                continue
            room = self.config.fetch_batch - len(state.buffer)
            if room <= 0:  # the committer is behind: wait until it takes some
                state.room.clear()
                await state.room.wait()
                continue
            assert state.sub is not None
            try:
                msgs = await pull(state.sub, room, FETCH_WAIT_S)  # ``sub.fetch``, cheaper a message
                entries = [Entry(stream_sequence(m.reply), *decode(m.data, m.headers)) for m in msgs]
            except (nats.errors.TimeoutError, TimeoutError):
                await self._check_consumer(state)
                continue
            except Exception as exc:
                log.warning("reading partition %d failed: %s: %s", state.number, type(exc).__name__, exc)
                await asyncio.sleep(RETRY_AFTER_S)
                state.reopen = True
                continue
            state.read_at = loop.time()
            if state.reopen or state.stopping:  # read on the subscription being replaced
                continue
            after = state.buffer[-1].seq if state.buffer else state.seq
            state.buffer += [e for e in entries if e.seq > after]
            self._wake.set()
        if state.sub is not None:  # its ephemeral consumer goes with it
            try:
                await state.sub.unsubscribe()
            except Exception:
                pass

    async def _check_consumer(self, state: Partition) -> None:
        """Subscribe again after the buffer if the partition's consumer is gone. JetStream deletes an
        ephemeral consumer with no pull request for ``inactive_threshold``: a reader waits that long
        when the committer is behind (its buffer full: a cold round, a busy machine), and a fetch on a
        deleted consumer only ever times out, so the partition would stall with its lease held."""
        now = asyncio.get_running_loop().time()
        if now - state.read_at < CONSUMER_CHECK_S or state.sub is None:
            return
        state.read_at = now
        try:
            await state.sub.consumer_info()
            return
        except nats.js.errors.NotFoundError:
            pass
        except Exception as exc:  # the broker is away: the next fetch fails and reopens
            log.warning("partition %d: no consumer info: %s: %s", state.number, type(exc).__name__, exc)
            return
        after = state.buffer[-1].seq if state.buffer else state.seq
        log.warning("partition %d: its consumer was gone; reading again after stream sequence %d",
                    state.number, after)
        try:
            await self._subscribe(state, after)
        except Exception as exc:
            log.warning("partition %d: no new consumer: %s: %s", state.number, type(exc).__name__, exc)
            state.reopen = True

    async def _reopen(self, state: Partition) -> None:
        state.ready = False
        while not state.stopping:
            try:
                await self._open(state)
                state.reopen, state.ready = False, True
                return
            except Exception as exc:
                log.warning("reopening partition %d failed: %s: %s", state.number, type(exc).__name__, exc)
                await asyncio.sleep(RETRY_AFTER_S)

    async def _open(self, state: Partition) -> None:
        """(Re)start reading after the checkpoint, with the partition's tracks forgotten."""
        state.buffer.clear()
        state.seq = await asyncio.to_thread(read_checkpoint, self.service.engine, state.number)
        await asyncio.to_thread(self._forget_tracks, state.number)
        await self._subscribe(state, state.seq)

    async def _subscribe(self, state: Partition, after: int) -> None:
        """A new ephemeral consumer of the partition from stream sequence ``after + 1``."""
        if state.sub is not None:
            try:
                await state.sub.unsubscribe()
            except Exception:  # already gone with its consumer
                pass
        js = self.link.js
        assert js is not None
        state.sub = await js.pull_subscribe(
            subject_of(self.config.subject, state.number),
            stream=self.config.stream,
            config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
                ack_policy=api.AckPolicy.NONE, inactive_threshold=max(60.0, 10 * self.config.lease_s),
            ),
        )
        state.read_at = asyncio.get_running_loop().time()

    def _read_again(self, state: Partition) -> None:
        state.reopen = True
        state.buffer.clear()
        state.room.set()

    # -- the committer: every partition's buffer in one transaction -------------------------------------
    async def _commit_loop(self, closing: asyncio.Event) -> None:
        while not closing.is_set():
            await self._wake.wait()
            self._wake.clear()
            while not closing.is_set():
                parts = [s for s in self.running.values() if s.ready and s.buffer
                         and not (s.reopen or s.stopping)]
                if not parts:
                    break
                self._rotation = (self._rotation + 1) % len(parts)  # each partition first in turn
                parts = parts[self._rotation:] + parts[: self._rotation]
                batch = take([(s.number, s.seq, s.buffer) for s in parts])
                if batch is None:
                    break
                try:
                    await self._commit_batch(batch, {s.number: s for s in parts})
                except Exception:  # a bug here must not stop the worker: log, go on
                    log.exception("committer failed")
                    await asyncio.sleep(RETRY_AFTER_S)

    async def _commit_batch(self, batch: Batch, states: dict[int, Partition]) -> None:
        self._in_flight = {n: states[n] for n in batch.moves}
        try:
            await asyncio.to_thread(self._commit, batch)
        except PartitionLost as lost:
            log.warning("partition %d was moved on by another worker; rereading it", lost.partition)
            self._read_again(states[lost.partition])
        except Exception:
            log.exception("ingest of partitions %s failed; replaying them from their checkpoints",
                          sorted(batch.moves))
            await asyncio.sleep(RETRY_AFTER_S)
            for number in batch.moves:
                self._read_again(states[number])
        else:
            for number, move in batch.moves.items():
                state = states[number]
                if state.reopen or not state.ready:  # being read again: its checkpoint is read then
                    continue
                state.seq = move.to
                state.buffer = [e for e in state.buffer if e.seq > move.to]
                state.room.set()
        finally:
            async with self._committed:
                self._in_flight = {}
                self._committed.notify_all()

    # -- ingest (in a thread: the event loop keeps renewing the leases meanwhile) --------------------
    def _commit(self, batch: Batch) -> None:
        outcome = self.ingest(batch.fixes, at=batch.at, moves=batch.moves)
        self.batches += 1
        for event in outcome.events:
            ZONE_EVENTS.labels(event.kind.value).inc()

    def ingest(
        self, fixes: Sequence[LocationFix], *, at: datetime, moves: Mapping[int, Move]
    ) -> IngestOutcome:
        """The embedded ingest of ``GeofenceService`` with the checkpoints ``moves`` in its transaction.

        ``at`` is the latest API receive time of the batch (they span at most ``batching.MAX_AT_SPAN``):
        the age and clock-skew checks the API made pass again (a fix would fail only if it was within
        that span of the 24 h age limit)."""
        service = self.service
        units: list[CheckpointedUnit] = []
        owner, written_at = self.worker_id, clock.now()

        with service._lock, ConnectionUnit(service.engine, service.kept) as unit:
            def unit_of_work() -> CheckpointedUnit:
                made = CheckpointedUnit(unit, service._uow(unit), moves, owner=owner, at=written_at)
                units.append(made)
                return made

            outcome = service.ingestor.ingest(fixes, uow_factory=unit_of_work, at=at)
            if not any(u.committed for u in units):  # nothing to write but the checkpoints
                move_checkpoints(unit, moves, owner=owner, at=written_at)
                unit.commit()
        return outcome

    def _forget_tracks(self, partition: int) -> None:
        with self.service._lock:
            tracks = self.service.ingestor.tracks
            for device_id in [d for d in tracks if partition_of(d, self.config.partitions) == partition]:
                tracks.remove(device_id)


def run_until_stopped(service: GeofenceService, link: NatsLink, stop_requested: object) -> None:
    """Run a worker on the link's loop until ``stop_requested`` (a ``threading.Event``) is set."""
    import threading

    assert isinstance(stop_requested, threading.Event)
    link.connect()
    worker = IngestWorker(service, link)
    stop = asyncio.Event()
    done = asyncio.run_coroutine_threadsafe(worker.run(stop), link.loop)
    while not stop_requested.wait(0.5):
        if done.done():
            done.result()  # a crash of the worker loop: raise it
    link.loop.call_soon_threadsafe(stop.set)
    try:
        done.result(timeout=60)  # the batches in hand are committed, the leases given back
    except TimeoutError:
        log.warning("the worker did not stop within 60 s; its leases expire on their own")
