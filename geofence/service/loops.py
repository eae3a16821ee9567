"""Loops woken by the commit that gives them work (``wakeup``), polling only as a fallback.

The log's consumers, the outbox dispatcher and the configuration sync run as loops rather than as
interval jobs: a zone event committed by an API process reaches the worker's campaign consumer through
``NOTIFY`` within milliseconds, not at the next tick of a scheduler.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from geofence.service.wakeup import PgListener, Wakeup, Wakeups

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loop:
    """``work()`` when ``wakeup`` is set, or every ``fallback_s``; it returns True when more is waiting
    (then it runs again at once). ``role`` says which process runs it ("api" | "worker" | "any").

    ``settle_s``: once woken, wait this long before the pass (``scheduler.side_loops_settle_s``), for
    the log's consumers that are not on an offer's path (export, webhooks, arrivals, orders). Why: every
    zone event woke them together with the campaign consumer, in the same worker process; their passes
    (each a few ms of Python) took the GIL while the offer was being decided and sent, and that path
    went from p50 38 to 73-86 ms as they were added (``bench.bench_latency``, docs/presence.md). Settled,
    they pass after it, and one pass takes every event that came meanwhile."""

    id: str
    work: Callable[[], bool]
    wakeup: Wakeup
    fallback_s: float
    role: str = "worker"
    settle_s: float = 0.0


class LoopThread(threading.Thread):
    def __init__(self, loop: Loop) -> None:
        super().__init__(name=f"loop:{loop.id}", daemon=True)
        self.loop = loop
        self._halt = threading.Event()

    def stop(self) -> None:
        self._halt.set()
        self.loop.wakeup.set()

    def run(self) -> None:
        loop, more = self.loop, True  # a first pass at start: work committed while no one ran
        while not self._halt.is_set():
            if not more:
                woken = loop.wakeup.wait(loop.fallback_s)
                if woken and loop.settle_s > 0:
                    self._halt.wait(loop.settle_s)
                    loop.wakeup.wait(0)  # what was signalled meanwhile, this pass takes
                if self._halt.is_set():
                    break
            try:
                more = loop.work()
            except Exception:  # a database blip: log, wait for the fallback, try again
                log.exception("loop %s failed", loop.id)
                more = False
                self._halt.wait(min(loop.fallback_s, 1.0))


@dataclass
class RunningLoops:
    threads: list[LoopThread]
    listener: PgListener | None

    def stop(self, timeout_s: float = 5.0) -> None:
        for thread in self.threads:
            thread.stop()
        if self.listener is not None:
            self.listener.stop()
        for thread in self.threads:
            thread.join(timeout_s)


def start_loops(
    loops: Iterable[Loop], roles: Iterable[str], *, engine: Engine, wakeups: Wakeups
) -> RunningLoops:
    """Start the loops of ``roles`` (and "any"), and on PostgreSQL the process's LISTEN connection, on
    the channels whose signal one of them waits for (``listened``)."""
    wanted = set(roles) | {"any"}
    threads = [LoopThread(loop) for loop in loops if loop.role in wanted]
    listener = None
    channels = listened(wakeups, [thread.loop for thread in threads])
    if channels and engine.dialect.name == "postgresql":
        listener = PgListener(engine, channels)
        listener.start()
    for thread in threads:
        thread.start()
    return RunningLoops(threads, listener)


def listened(wakeups: Wakeups, loops: Iterable[Loop]) -> dict[str, Wakeup]:
    """The channels some loop of this process waits on (itself or through a follower). Why not all: each
    NOTIFY wakes every listening connection — a backend's transaction, a message, a thread taking the
    GIL — so an API process, whose only loop is the zone sync, listening to the zone-event channel
    would be woken by every batch that writes an event, in every process."""
    waited = {id(loop.wakeup) for loop in loops}

    def waited_on(wakeup: Wakeup) -> bool:
        return id(wakeup) in waited or any(waited_on(f) for f in wakeup.followers)

    return {channel: w for channel, w in wakeups.by_channel().items() if waited_on(w)}
