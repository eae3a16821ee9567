"""Wake-ups: the commit that gives a loop work wakes it; polling is only the fallback.

PostgreSQL: the writing transaction sends ``NOTIFY <channel>`` (delivered at commit, dropped on
rollback) and every process keeps one ``LISTEN`` connection (``PgListener``). SQLite has no
notifications: the writer sets this process's ``Wakeup`` after its commit, and loops in other processes
find the work at their next poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "geofence_events"  # a zone event was committed (the log's consumers)
OUTBOX_CHANNEL = "geofence_outbox"  # a delivery became due now (the dispatcher)
CONFIG_CHANNEL = "geofence_config"  # zones, policies or campaigns changed (every process's caches)


class Wakeup:
    """A level-triggered signal for one loop: ``set`` by whoever made work, ``wait`` by the loop.

    ``wait`` clears it: a ``set`` while the loop works makes the next ``wait`` return at once, and one
    between the wait's return and the clear is seen by the work that follows anyway."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.followers: list[Wakeup] = []  # other loops woken by the same work (each clears its own)

    def set(self) -> None:
        if not self._event.is_set():  # set already: nothing to do (``Event.set`` takes its lock to see)
            self._event.set()
        for follower in self.followers:
            follower.set()

    def follower(self) -> Wakeup:
        """A signal set whenever this one is: a second loop on the same channel."""
        wakeup = Wakeup()
        self.followers.append(wakeup)
        return wakeup

    def wait(self, timeout_s: float) -> bool:
        woken = self._event.wait(timeout_s)
        self._event.clear()
        return woken


@dataclass
class Wakeups:
    """This process's signals, one per channel."""

    events: Wakeup = field(default_factory=Wakeup)
    outbox: Wakeup = field(default_factory=Wakeup)
    config: Wakeup = field(default_factory=Wakeup)
    webhooks: Wakeup = field(default_factory=Wakeup)  # deliveries enqueued (in-process: same worker)
    store_events: Wakeup = field(default_factory=Wakeup)  # store-side events committed (in-process)

    def by_channel(self) -> dict[str, Wakeup]:
        return {EVENTS_CHANNEL: self.events, OUTBOX_CHANNEL: self.outbox, CONFIG_CHANNEL: self.config}


def notify(engine: Engine, channel: str) -> None:
    """Tell every process's listeners (PostgreSQL; nothing on SQLite) outside a transaction of ours."""
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})


class PgListener(threading.Thread):
    """One ``LISTEN`` connection per process, setting the ``Wakeup`` of each notified channel.

    Every wakeup is set after (re)connecting: what was committed while nobody listened is found then."""

    def __init__(self, engine: Engine, wakeups: Mapping[str, Wakeup], *, reconnect_s: float = 1.0) -> None:
        super().__init__(name="pg-listener", daemon=True)
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._wakeups = dict(wakeups)
        self._reconnect_s = reconnect_s
        self._halt = threading.Event()
        self.listening = threading.Event()

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        import psycopg

        while not self._halt.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as conn:
                    for channel in self._wakeups:
                        conn.execute(f"LISTEN {channel}")  # our own constant names: nothing to quote
                    self.listening.set()
                    for wakeup in self._wakeups.values():
                        wakeup.set()
                    while not self._halt.is_set():
                        for note in conn.notifies(timeout=0.5):
                            notified = self._wakeups.get(note.channel)
                            if notified is not None:
                                notified.set()
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("LISTEN connection lost (%s); polling until it is back", exc)
                self._halt.wait(self._reconnect_s)
