"""``geofence ingest-worker``: ingest the partitions this process holds a lease on.

For each owned partition: read its checkpoint (``ingest_partitions``), read the stream from the next
sequence with an ephemeral pull consumer (no acknowledgements: the checkpoint in PostgreSQL is the
only cursor, committed with the work), and step every batch of messages through the same ingest as
the embedded path (``GeofenceService``'s ``Ingestor`` and stores: presences cached in memory and
validated against the database's change feed, versioned writes, the zone-event log), moving the
checkpoint in that transaction. Partitions come and go with the leases (``leases``); a partition
taken over starts from its checkpoint with the devices' in-memory tracks of the partition dropped,
since another worker may have moved them on.
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
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from geofence.fixes import LocationFix
from geofence.ingest import IngestOutcome
from geofence.service import clock
from geofence.service.bus.checkpoint import (
    CheckpointedUnit,
    Move,
    PartitionLost,
    move_checkpoint,
    read_checkpoint,
)
from geofence.service.bus.leases import PartitionLeases
from geofence.service.bus.link import NatsLink
from geofence.service.bus.partitions import decode, partition_of, subject_of
from geofence.service.db import ConnectionUnit
from geofence.service.metrics import ZONE_EVENTS
from geofence.service.wiring.geofence import GeofenceService

log = logging.getLogger(__name__)

MAX_FIXES = 5000  # fixes per transaction; a fetch larger than that is committed in several
FETCH_WAIT_S = 0.5  # a fetch waits this long for a first message
RETRY_AFTER_S = 1.0  # after a failed batch (database down...), before replaying from the checkpoint


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(eq=False)
class Partition:
    number: int
    seq: int = 0  # last stream sequence committed (the checkpoint, as this worker last wrote or read it)
    sub: JetStreamContext.PullSubscription | None = None
    task: asyncio.Task[None] | None = None
    stopping: bool = False
    batches: int = field(default=0)


class IngestWorker:
    def __init__(self, service: GeofenceService, link: NatsLink, *, worker_id: str | None = None) -> None:
        self.service = service
        self.link = link
        self.config = link.config
        self.worker_id = worker_id or new_worker_id()
        self.running: dict[int, Partition] = {}
        self._leaving: set[int] = set()  # partitions being given back

    async def run(self, stop: asyncio.Event) -> None:
        """Hold leases and consume until ``stop`` is set; then give every partition back."""
        assert self.link.leases is not None, "connect() first"
        leases = PartitionLeases(self.link.leases, self.worker_id, self.config.partitions)
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
                    await self._start(number)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=self.config.lease_s / 3)
                except TimeoutError:
                    pass
        finally:
            for number in list(self.running):
                await self._stop(number)
            try:
                await leases.release_all()
            except Exception:  # the leases expire on their own
                log.warning("could not release the leases; they expire within %.0f s", self.config.lease_s)

    # -- one partition ---------------------------------------------------------------------------
    def _abandon(self, number: int) -> None:
        state = self.running.pop(number, None)
        if state is not None:
            state.stopping = True
            log.info("worker %s lost partition %d", self.worker_id, number)

    async def _give_back(self, number: int, leases: PartitionLeases) -> None:
        try:
            await self._stop(number)
            await leases.release(number)
        finally:
            self._leaving.discard(number)

    async def _start(self, number: int) -> None:
        """Open and consume on a task of its own: opening waits for the ingest lock (the tracks are
        dropped under it), which must never hold up the lease renewals."""
        state = Partition(number)
        self.running[number] = state
        state.task = asyncio.create_task(self._open_and_consume(state), name=f"partition-{number}")

    async def _open_and_consume(self, state: Partition) -> None:
        await self._reopen(state)
        log.info("worker %s took partition %d at stream sequence %d", self.worker_id, state.number, state.seq)
        await self._consume(state)

    async def _open(self, state: Partition) -> None:
        """(Re)start reading after the checkpoint, with the partition's tracks forgotten."""
        state.seq = await asyncio.to_thread(read_checkpoint, self.service.engine, state.number)
        await asyncio.to_thread(self._forget_tracks, state.number)
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
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=state.seq + 1,
                ack_policy=api.AckPolicy.NONE, inactive_threshold=max(60.0, 10 * self.config.lease_s),
            ),
        )

    async def _stop(self, number: int) -> None:
        state = self.running.pop(number, None)
        if state is None:
            return
        state.stopping = True  # the batch in hand is finished (and committed) first
        if state.task is not None:
            await state.task
        log.info("worker %s left partition %d at stream sequence %d", self.worker_id, number, state.seq)

    async def _consume(self, state: Partition) -> None:
        while not state.stopping:
            assert state.sub is not None
            try:
                msgs = await state.sub.fetch(self.config.fetch_batch, timeout=FETCH_WAIT_S)
            except (nats.errors.TimeoutError, TimeoutError):
                continue
            except Exception as exc:
                log.warning("fetch on partition %d failed: %s: %s", state.number, type(exc).__name__, exc)
                await self._reopen(state)
                continue
            try:
                await asyncio.to_thread(self._ingest_messages, state, msgs)
            except PartitionLost:
                log.warning("partition %d was moved on by another worker; rereading it", state.number)
                await self._reopen(state)
            except Exception:
                log.exception("ingest of partition %d failed; replaying from its checkpoint", state.number)
                await asyncio.sleep(RETRY_AFTER_S)
                await self._reopen(state)
        if state.sub is not None:  # its ephemeral consumer goes with it
            try:
                await state.sub.unsubscribe()
            except Exception:
                pass

    async def _reopen(self, state: Partition) -> None:
        while not state.stopping:
            try:
                await self._open(state)
                return
            except Exception as exc:
                log.warning("reopening partition %d failed: %s: %s", state.number, type(exc).__name__, exc)
                await asyncio.sleep(RETRY_AFTER_S)

    # -- ingest (in a thread: the event loop keeps renewing the leases meanwhile) --------------------
    def _ingest_messages(self, state: Partition, msgs: Sequence[Msg]) -> None:
        """Consecutive messages with no device in common are ingested as one batch (at most
        ``MAX_FIXES``), as the location feed merges requests: a device met once in a batch can take
        the ingest's vectorised fast lane, one met several times cannot. Each batch commits its
        checkpoint."""
        fixes: list[LocationFix] = []
        devices: set[str] = set()
        at: datetime | None = None
        last = state.seq
        for msg in msgs:
            seq = msg.metadata.sequence.stream
            if seq <= last:  # read again after a reopen
                continue
            part, sent_at = decode(msg.data, msg.headers)
            mine = {f.device_id for f in part}
            if fixes and (len(fixes) + len(part) > MAX_FIXES or not devices.isdisjoint(mine)):
                self._commit(state, fixes, at or sent_at, last)
                fixes, devices, at = [], set(), None
            fixes.extend(part)
            devices |= mine
            at = sent_at if at is None else max(at, sent_at)
            last = seq
        if last > state.seq:
            self._commit(state, fixes, at or clock.now(), last)

    def _commit(self, state: Partition, fixes: list[LocationFix], at: datetime, last: int) -> None:
        outcome = self.ingest(fixes, at=at, moves={state.number: Move(state.seq, last, len(fixes))})
        state.seq = last
        state.batches += 1
        for event in outcome.events:
            ZONE_EVENTS.labels(event.kind.value).inc()

    def ingest(
        self, fixes: Sequence[LocationFix], *, at: datetime, moves: Mapping[int, Move]
    ) -> IngestOutcome:
        """The embedded ingest of ``GeofenceService`` with the checkpoints ``moves`` in its transaction.

        ``at`` is the latest API receive time of the batch: the age and clock-skew checks the API made
        pass again (a fix would fail only if it was within the batch's span of the 24 h age limit)."""
        service = self.service
        units: list[CheckpointedUnit] = []
        owner, written_at = self.worker_id, clock.now()

        with service._lock, ConnectionUnit(service.engine) as unit:
            def unit_of_work() -> CheckpointedUnit:
                made = CheckpointedUnit(unit, service._uow(unit), moves, owner=owner, at=written_at)
                units.append(made)
                return made

            outcome = service.ingestor.ingest(fixes, uow_factory=unit_of_work, at=at)
            if not any(u.committed for u in units):  # nothing to write but the checkpoint
                for partition, move in sorted(moves.items()):
                    move_checkpoint(unit, partition, move, owner=owner, at=written_at)
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
