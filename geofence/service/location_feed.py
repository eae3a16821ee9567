"""The thread that serves ``POST /v1/locations`` bodies: in arrival order, several as one batch under load.

Why one thread: the ingest holds a per-process lock anyway; one thread with a FIFO queue serves requests
in the order they came (a lock is not fair) and costs one hop per request, without anyio's limiter.

Why coalesce: of a 100-fix request's cost, a good part is per batch, not per fix: the index's match call,
the change-feed read, the transaction and its commit (measured in-process: ~45 us per fix in 100-fix
batches, ~25 in 1,000-fix ones). When requests wait in the queue (the load is high), the thread takes
them all and ingests consecutive ones with no device in common as one batch, up to ``MAX_FIXES``; each
request still gets its own answer: its fixes' results and the events of its devices. Requests that share
a device are never merged, so a device's fixes are processed exactly as if the requests came one by one.
When a merged batch fails, each of its requests is ingested again on its own: a failure is its own
request's, never its neighbours'.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.ingest import FixResult
from geofence.service import clock
from geofence.service.ingest_answers import AlreadyAnswered, AnsweredRequest

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)

MAX_FIXES = 1000  # one merged batch at most (the largest request allowed on its own)
MAX_JOBS = 32  # requests taken from the queue at once

Prepared = tuple[list[LocationFix], dict[int, str], str]  # fixes, refused positions, answer key


@dataclass(eq=False)
class FeedJob:
    """One request: what it carries in (``context``: the runtime and the request; ``body``) and out."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[bytes]
    runtime: Runtime
    context: Any
    body: bytes
    fixes: list[LocationFix] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    key: str = ""  # the request's answer key (``ingest_answers``): a retry of it gets the same answer

    def resolve(self, payload: bytes | None = None, error: BaseException | None = None) -> None:
        def settle() -> None:
            if self.future.done():  # the client went away and the request was cancelled
                return
            if error is not None:
                self.future.set_exception(error)
            else:
                self.future.set_result(payload)  # type: ignore[arg-type]

        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:  # the loop is closed: nobody is waiting
            pass


class LocationFeed:
    """``submit`` from the event loop; ``prepare`` (authenticate, decode: may raise ``HTTPException``) and
    ``render`` (results, events -> body) and ``replay`` (the stored answer of a request already answered,
    by key) are the route's; ``service.ingest`` is the use case."""

    def __init__(
        self,
        prepare: Callable[[Any, Any, bytes], Prepared],
        render: Callable[[Sequence[FixResult], Sequence[ZoneEvent]], bytes],
        replay: Callable[[Runtime, str], bytes | None],
    ) -> None:
        self._prepare = prepare
        self._render = render
        self._replay = replay
        self._queue: queue.SimpleQueue[FeedJob] = queue.SimpleQueue()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None
        self.batches = 0  # ingest calls, and requests served: their ratio is the coalescing achieved
        self.requests = 0

    def submit(self, runtime: Runtime, context: Any, body: bytes) -> asyncio.Future[bytes]:
        loop = asyncio.get_running_loop()
        job = FeedJob(loop, loop.create_future(), runtime, context, body)
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="location-feed", daemon=True)
                    self._thread.start()
        self._queue.put(job)
        return job.future

    def _run(self) -> None:
        busy = False
        while True:
            jobs = self.take(busy=busy)
            try:
                self.serve(jobs)
            except Exception as exc:  # a bug here must not stop the feed: fail what is left, go on
                log.exception("location feed failed")
                for job in jobs:
                    job.resolve(error=exc)
            busy = self.loaded(served=len(jobs))

    def loaded(self, *, served: int) -> bool:
        """Whether the feed is under load after serving ``served`` requests: they came together, or more
        waited through their batch. (Waiting only in the second case, two clients' requests alternated
        between batches of one and of two: 1.6 a batch.)"""
        return served > 1 or not self._queue.empty()

    def take(self, *, busy: bool) -> list[FeedJob]:
        """The next requests to serve: the first to come and all waiting behind it. ``busy`` (``loaded``)
        and alone: wait up to ``ingest.group_wait_ms`` for a second one.

        Why: with the feed saturated, the clients whose requests were just answered send their next ones
        a fraction of a millisecond after the following batch started, so batches held one request each
        and alternated (two clients a process: 1.2 requests a batch). A batch's transaction, commit, change
        feed and, on SQLite, write lock cost the same for one request or two; waiting 0.5 ms for the
        second cut the server's CPU per request by ~10 % and lowered the median latency (``bench_ingest``,
        docs/presence.md). Idle or lightly loaded (requests one at a time), a request never waits."""
        jobs = [self._queue.get()]
        self._drain(jobs)
        wait_ms = jobs[0].runtime.settings.ingest.group_wait_ms if busy and len(jobs) == 1 else 0.0
        if wait_ms > 0:
            try:
                jobs.append(self._queue.get(timeout=wait_ms / 1000))
            except queue.Empty:
                return jobs
            self._drain(jobs)
        return jobs

    def _drain(self, jobs: list[FeedJob]) -> None:
        while len(jobs) < MAX_JOBS:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def serve(self, jobs: list[FeedJob]) -> None:
        """Prepare each job, then ingest runs of consecutive jobs with disjoint devices as one batch."""
        group: list[FeedJob] = []
        devices: set[str] = set()
        size = 0
        for job in jobs:
            try:
                job.fixes, job.refused, job.key = self._prepare(job.runtime, job.context, job.body)
            except Exception as exc:
                job.resolve(error=exc)
                continue
            refused = job.refused
            job.devices = {f.device_id for i, f in enumerate(job.fixes) if i not in refused}
            if group and (
                size + len(job.fixes) > MAX_FIXES or job.runtime is not group[0].runtime
                or not devices.isdisjoint(job.devices)
            ):
                self._ingest(group)
                group, devices, size = [], set(), 0
            group.append(job)
            devices |= job.devices
            size += len(job.fixes)
        if group:
            self._ingest(group)

    def _ingest(self, group: list[FeedJob], *, retried: bool = False) -> None:
        self.batches += 1
        self.requests += 0 if retried else len(group)
        service = group[0].runtime.geofence
        if len(group) == 1:
            fixes, refused = group[0].fixes, group[0].refused
        else:
            fixes, refused = [], {}
            for job in group:
                refused.update((len(fixes) + i, reason) for i, reason in job.refused.items())
                fixes.extend(job.fixes)
        answered, start = [], 0
        for job in group:
            answered.append(AnsweredRequest(job.key, start, start + len(job.fixes), frozenset(job.devices)))
            start += len(job.fixes)
        try:
            outcome = service.ingest(fixes, at=clock.now(), refused=refused, answered=answered)
        except Exception as exc:
            if len(group) == 1:
                self._fail_or_replay(group[0], exc, retried)
                return
            # One request's fixes must never fail another's: nothing was committed (the ingest is one
            # transaction and restores its caches on failure), so serve each request on its own.
            log.warning("merged ingest of %d requests failed (%s); ingesting them one by one",
                        len(group), type(exc).__name__)  # fmt: skip
            for job in group:
                self._ingest([job], retried=True)
            return
        if len(group) == 1:
            group[0].resolve(self._render(outcome.results, outcome.events))
            return
        owner = {d: job for job in group for d in job.devices}
        start = 0
        for job in group:
            end = start + len(job.fixes)
            events = [e for e in outcome.events if owner.get(e.device_id) is job]
            job.resolve(self._render(outcome.results[start:end], events))
            start = end

    def _fail_or_replay(self, job: FeedJob, exc: Exception, retried: bool) -> None:
        """A request answered first (by this process or another): its stored answer. Any other failure
        is the request's own."""
        if not isinstance(exc, AlreadyAnswered):
            job.resolve(error=exc)
            return
        try:
            payload = self._replay(job.runtime, job.key)
        except Exception as failure:
            job.resolve(error=failure)
            return
        if payload is None and not retried:  # purged in between: an answer of its own, then
            self._ingest([job], retried=True)
            return
        job.resolve(payload, error=None if payload is not None else exc)
