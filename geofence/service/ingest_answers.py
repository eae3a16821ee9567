"""The answers ``POST /v1/locations`` gave, so that a retried request gets exactly the first answer.

Why: a client that lost an answer (a timeout, a dropped connection) posts the same body again. Stepping
it again would answer from the state its first pass left: an accepted fix comes back ``duplicate`` (or
``out_of_order``), a fix rejected for its age may be accepted. So each request's answer is stored in the
transaction that commits its effects, keyed by the caller and the body (``answer_key``): a request with a
stored answer is answered from it, by any API process.

The key is claimed by the ``INSERT`` itself: the common, new request costs one statement and no read.
A retry is ingested like any request, and its ``INSERT`` finds the key taken — after waiting for the
original's commit if that one is still in flight on another process — which raises ``AlreadyAnswered``:
the transaction rolls back (nothing of the retry is kept) and the stored answer is sent.

Stored: the results that are not ``accepted`` (the others are implied) and the ids of the answer's
events, which the same transaction writes to the zone-event log, not copies of them: a request whose
fixes entered ~1,000 zones stored ~250 kB of rendered events, written twice with the log, and an erased
person's events stayed in the copies until their purge. A replay reads the events back from
``zone_events``, in log order; one erased since is no longer there, and is not given again. (Rows stored
before held the events as rendered; they are read as such.)

The row is the transaction's first write (``geofence.store.AnswerStore``): on PostgreSQL the presence
clock's row lock, which the batch's writes take and hold to the commit, is not held across it, and a
retry of a request still in flight elsewhere waits for it holding nothing.

Kept ``ingest.answer_retention_s`` (15 min by default: a client's retries after a timeout, with backoff,
come within it; the table holds at most retention x request rate rows), then purged; a retry later than
that is answered afresh. On PostgreSQL the table is unlogged (``tables.answers``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import delete, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from geofence.events import ZoneEvent
from geofence.ingest import ACCEPTED, FixResult
from geofence.service.db import ConnectionUnit, first_write
from geofence.service.driver_sql import execute, time_binder
from geofence.service.tables.answers import IngestAnswerRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.versioned_writes import VersionedWrites

ANSWERS = IngestAnswerRow.__table__  # type: ignore[attr-defined]
_E = ZoneEventRow.__table__.c  # type: ignore[attr-defined]
_EVENT_FIELDS = ("id", "zone_id", "device_id", "kind", "at", "visit_id", "reason", "lat", "lng")  # event_dict
_INSERT = "INSERT INTO ingest_answers (key, created_at, results, events) VALUES "
_encoder = msgspec.json.Encoder()
_ACCEPTED = FixResult(ACCEPTED)


class AlreadyAnswered(Exception):
    """A request with this key was answered first (its answer is stored): send that one."""

    def __init__(self, keys: Sequence[str]) -> None:
        super().__init__("this request was answered already")
        self.keys = list(keys)


@dataclass(frozen=True)
class AnsweredRequest:
    """One request of an ingested batch: its key, its fixes (``start:end`` in the batch), its devices."""

    key: str
    start: int
    end: int
    devices: frozenset[str]


def answer_key(key_id: str | None, device_id: str | None, body: bytes) -> str:
    """The caller (API key id, device) and the body: a retry is the same request from the same caller."""
    digest = hashlib.sha256(f"{key_id or ''}\n{device_id or ''}\n".encode())
    digest.update(body)
    return digest.hexdigest()


def event_dict(e: ZoneEvent) -> dict[str, Any]:
    """An event as the answer shows it (``routes.locations.IngestOut``)."""
    return {"id": e.id, "zone_id": e.zone_id, "device_id": e.device_id, "kind": e.kind.value, "at": e.at,
            "visit_id": e.visit_id, "reason": e.reason, "lat": e.lat, "lng": e.lng}


def encode_results(results: Sequence[FixResult]) -> str:
    """``{"n": count, "x": {position: [status, reason]}}`` with only the fixes not accepted."""
    other = {str(i): [r.status, r.reason] for i, r in enumerate(results) if r.status != ACCEPTED}
    return _encoder.encode({"n": len(results), "x": other}).decode()


def decode_results(text: str) -> list[FixResult]:
    doc = msgspec.json.decode(text)
    results = [_ACCEPTED] * int(doc["n"])
    for i, (status, reason) in doc["x"].items():
        results[int(i)] = FixResult(status, reason)
    return results


class SqlAnswerStore:
    """A unit of work's ``answers``: the answers of the batch's requests, written first."""

    def __init__(
        self, session: Session | ConnectionUnit, requests: Sequence[AnsweredRequest], at: datetime
    ) -> None:
        self.session, self.requests, self.at = session, requests, at
        self.writes: VersionedWrites | None = None  # its unit of work's (``SqlUnitOfWork``)

    def add(self, results: Sequence[FixResult], events: Sequence[ZoneEvent]) -> None:
        """One ``INSERT`` of every request's row (one statement); ``AlreadyAnswered`` when one's key is
        taken. On PostgreSQL, first in the writing scope, it goes out with the clock's tick (one round
        trip; a taken key is raised when the scope's answers come in: ``VersionedWrites.claim``). On
        SQLite, as the transaction's first write, it waits for the write lock as the clock tick does
        (``db.first_write``)."""
        conn = self.session.connection()
        created_at = time_binder(conn)(self.at)
        params: list[Any] = []
        for request in self.requests:
            mine = [e.id for e in events if e.device_id in request.devices]
            params += (request.key, created_at, encode_results(results[request.start : request.end]),
                       _encoder.encode(mine).decode())
        sqlite = conn.dialect.name == "sqlite"
        mark = "?" if sqlite else "%s"
        sql = _INSERT + ", ".join([f"({mark}, {mark}, {mark}, {mark})"] * len(self.requests))
        keys = [r.key for r in self.requests]
        if self.writes is not None and self.writes.pipe is not None:
            self.writes.claim(ANSWERS.name, lambda: AlreadyAnswered(keys))
        try:
            if not sqlite or first_write(conn.connection.driver_connection, sql, params) is None:  # type: ignore[arg-type]
                execute(conn, sql, tuple(params))
        except (IntegrityError, sqlite3.IntegrityError) as exc:
            raise AlreadyAnswered(keys) from exc


def find_answer(conn: Connection, key: str) -> tuple[list[FixResult], list[dict[str, Any]]] | None:
    """The stored answer of a request (results, rendered events), or None."""
    row = conn.execute(select(ANSWERS.c.results, ANSWERS.c.events).where(ANSWERS.c.key == key)).first()
    if row is None:
        return None
    stored = msgspec.json.decode(row[1])
    if stored and all(type(x) is str for x in stored):
        stored = logged_events(conn, stored)
    return decode_results(row[0]), stored


def logged_events(conn: Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    """These events of the log, rendered as ``event_dict``, in log order; those erased since (deleted,
    or their device taken off) are left out."""
    rows: list[Any] = []
    for start in range(0, len(ids), 500):
        rows += conn.execute(
            select(*[_E[name] for name in _EVENT_FIELDS], _E.seq)
            .where(_E.id.in_(ids[start : start + 500]), _E.device_id.is_not(None))
        ).all()
    rows.sort(key=lambda r: r.seq)
    return [{**dict(zip(_EVENT_FIELDS, r[:-1], strict=True)), "at": _plain(r.at)} for r in rows]


def _plain(at: datetime) -> datetime:
    """The time as a plain ``datetime``: msgspec encodes exact types only, and the driver's values are of
    whatever ``datetime`` is at the time (freezegun's subclass under a frozen clock, in tests)."""
    plain = next(c for c in type(at).__mro__ if c.__module__ == "datetime" and c.__name__ == "datetime")
    if type(at) is plain:
        return at
    fields = (at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond)
    made: datetime = plain(*fields, tzinfo=at.tzinfo)
    return made


def purge_answers(conn: Connection, *, before: datetime) -> int:
    """Delete the answers stored before ``before`` (older retries are answered afresh)."""
    return conn.execute(delete(ANSWERS).where(ANSWERS.c.created_at < before)).rowcount or 0
