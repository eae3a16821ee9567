"""Tables: zone events (and, owned by the presence domain, presence state and optional raw fixes).

Owner: location feed & presence (issue 3).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from geofence.service.tables._types import utc_column


class ZoneEventRow(SQLModel, table=True):
    __tablename__ = "zone_events"

    id: str = Field(primary_key=True)
    seq: int | None = Field(default=None, index=True)  # the log position, in commit order (PresenceClockRow)
    zone_id: str = Field(index=True)
    device_id: str | None = Field(default=None, index=True)  # None once the device's owner is erased
    customer_id: str | None = Field(default=None, index=True)
    kind: str = Field(index=True)  # enter | dwell | exit
    at: datetime = utc_column(nullable=False, index=True)
    visit_id: str = Field(index=True)
    reason: str
    lat: float | None = None  # rounded to ~100 m
    lng: float | None = None
    recorded_at: datetime | None = utc_column()  # no index: the live console tails by ``seq``


class PresenceHeadRow(SQLModel, table=True):
    """One per device with presences (or recent ones): every write of any of its ``presences`` rows also
    bumps ``version`` here, so a worker validates its cached copy of a device with one row. ``last_fix_at``
    is the last fix processed for the device (written with every change, else once a heartbeat): it
    keeps a late fix from rewinding any of its presences on any worker, and it is the sweep's silence
    clock. Deleted once the device has no presence and its last fix is too old to be followed by a
    late one.

    ``seq`` is the ``presence_clock`` tick of the head's last write: the change feed by which each worker
    learns, in one query per batch, which of its cached devices another writer moved. ``rows_version`` is
    the version of the last write that changed a presence row (a heartbeat moves ``version`` only, and a
    cached copy then stays good)."""

    __tablename__ = "presence_heads"
    __table_args__ = {"sqlite_with_rowid": False}  # one B-tree: a head is one lookup, not two

    device_id: str = Field(primary_key=True)
    version: int = 1
    rows_version: int = 1
    seq: int = Field(default=0, sa_type=BigInteger, index=True)
    last_fix_at: datetime | None = utc_column()  # no index: the hourly purge scans, heartbeats stay cheap


class PresenceClockRow(SQLModel, table=True):
    """One row (``id`` 1). Every transaction that writes heads ticks ``seq`` first and stamps its heads
    with the tick; the row lock it takes (PostgreSQL) or the database's single writer (SQLite) makes the
    ticks commit in order, so "heads with ``seq`` > the last tick I saw" misses nothing. ``resets`` is
    bumped by whoever deletes presences outside the store (an erasure): every worker drops its cache.
    ``events`` is the last ``zone_events.seq`` handed out: a transaction that writes events takes the
    next numbers under the same row lock, so the log's sequence is in commit order (no gaps a reader
    could pass before they commit; ``geofence.service.event_log``)."""

    __tablename__ = "presence_clock"

    id: int = Field(default=1, primary_key=True)
    seq: int = Field(default=0, sa_type=BigInteger)
    resets: int = 0
    events: int = Field(default=0, sa_type=BigInteger)


class PresenceRow(SQLModel, table=True):
    """The presence of one device in one zone, while it is more than plain outside (an exit deletes it;
    the device's ``presence_heads`` row keeps the late-fix guard). ``version`` is the optimistic
    concurrency counter: every writer updates ``WHERE version = <the version it read>``; ``last_fix_at``
    is the fix of the row's last change (the device's head has the latest fix)."""

    __tablename__ = "presences"
    # one B-tree keyed by (device, zone) on SQLite: a write dirties one page there, not one in the rowid
    # table and one in the key's index, and a device's rows lie together for the read in full
    __table_args__ = {"sqlite_with_rowid": False}

    device_id: str = Field(primary_key=True)
    zone_id: str = Field(primary_key=True, index=True)
    # no index on state or times: every write would dirty their pages too, and the sweep scans anyway
    state: str  # entering | inside | dwelling | exiting ("outside" only in rows older than the heads)
    since_at: datetime | None = utc_column()
    last_fix_at: datetime | None = utc_column()
    entered_at: datetime | None = utc_column()
    visit_id: str | None = None
    pending_fixes: int = 0
    dwelled: bool = False
    lat: float | None = None  # rounded (~100 m) position of the enter
    lng: float | None = None
    version: int = 1


class LocationFixRow(SQLModel, table=True):
    """Raw fixes, only when ``settings.ingest.fix_retention_s > 0``, and purged after that time."""

    __tablename__ = "location_fixes"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str = Field(index=True)
    lat: float
    lng: float
    accuracy_m: float
    recorded_at: datetime = utc_column(nullable=False)
    received_at: datetime = utc_column(nullable=False, index=True)
    client_fix_id: str | None = None
