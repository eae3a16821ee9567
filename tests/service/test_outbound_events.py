"""The store-side event log: ``emit`` writes in the caller's transaction, numbers in commit order, and
refuses payloads that would carry a phone number, token or position."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.storage.outbound_events import emit, read_after
from geofence.service.db import create_schema, make_engine

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_emitted_event_commits_with_the_change_and_a_rollback_drops_it(engine: Engine):
    with Session(engine) as session:
        emit(session, "order.ready", {"order_id": "o1"}, subject_id="o1", occurred_at=T0)
        session.rollback()
    with Session(engine) as session:
        kept = emit(session, "order.ready", {"order_id": "o2"}, subject_id="o2", occurred_at=T0)
        session.commit()
    with Session(engine) as session:
        events = read_after(session, 0, 10)
    assert [(e.type, e.subject_id, e.payload) for e in events] == [("order.ready", "o2", {"order_id": "o2"})]
    assert events[0].id == kept.id and kept.id.startswith("evt_") and kept.seq is None
    assert events[0].occurred_at == T0


@pytest.mark.parametrize(
    "payload",
    [{"phone": "+33612345678"}, {"customer": {"push_token": "x"}}, {"items": [{"lat": 48.8}]}, {"to": "x"}],
)
def test_payload_naming_a_phone_token_or_position_is_refused(engine: Engine, payload):
    with Session(engine) as session, pytest.raises(ValueError, match="may not carry"):
        emit(session, "message.sent", payload, subject_id="d1", occurred_at=T0)


@pytest.mark.parametrize("event_type", ["unknown.thing", "message", "zone.entered"])
def test_unknown_event_family_is_refused(engine: Engine, event_type):
    with Session(engine) as session, pytest.raises(ValueError, match="family"):
        emit(session, event_type, {}, subject_id="x", occurred_at=T0)


def test_naive_time_is_refused(engine: Engine):
    with Session(engine) as session, pytest.raises(ValueError, match="timezone"):
        emit(session, "order.ready", {}, subject_id="x", occurred_at=datetime(2026, 12, 6))


@pytest.mark.postgres
def test_a_reader_following_its_cursor_misses_no_event_of_concurrent_writers(pg_url: str):
    """Numbers are taken at commit under the clock row's lock, so they become visible in order: a
    reader that moves its cursor to the highest number it saw never passes one committed later.
    (PostgreSQL: SQLite has one writer, so its order is that of the commits anyway.)"""
    engine = make_engine(pg_url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbound_events"))
    emitted: list[str] = []
    seen: list[str] = []
    done = threading.Event()

    def write(w: int) -> None:
        for i in range(40):
            with Session(engine) as session:
                ids = [
                    emit(session, "order.ready", {"w": w}, subject_id=f"{w}-{i}-{k}", occurred_at=T0).id
                    for k in range(1 + i % 2)
                ]
                session.commit()
            emitted.extend(ids)

    def read() -> None:
        cursor, last_pass = 0, False
        while not last_pass:
            last_pass = done.is_set()
            with Session(engine) as session:
                events = read_after(session, cursor, 1000)
            assert all(e.seq > cursor for e in events)
            seen.extend(e.id for e in events)
            cursor = events[-1].seq if events else cursor

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    done.set()
    reader.join(60)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbound_events"))
    engine.dispose()
    assert len(emitted) == 4 * 60
    assert sorted(seen) == sorted(emitted) and len(set(seen)) == len(seen)


def test_one_transaction_emitting_several_events_numbers_them_in_emit_order(engine: Engine):
    with Session(engine) as session:
        ids = [emit(session, "message.sent", {"i": i}, subject_id=f"d{i}", occurred_at=T0).id for i in "abc"]
        session.commit()
    with Session(engine) as session:
        events = read_after(session, 0, 10)
    assert [e.id for e in events] == ids
    assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_many_events_read_in_order_in_pages(engine: Engine):
    with Session(engine) as session:
        for i in range(7):
            at = T0 + timedelta(seconds=i)
            emit(session, "consent.changed", {"i": i}, subject_id=f"c{i}", occurred_at=at)
            session.commit()
    with Session(engine) as session:
        first = read_after(session, 0, 4)
        rest = read_after(session, first[-1].seq, 4)
    assert [e.payload["i"] for e in first + rest] == list(range(7))
