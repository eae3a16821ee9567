"""The store-side event log: ``emit`` writes in the caller's transaction, numbers in commit order, and
refuses payloads that would carry a phone number, token or position."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.storage.outbound_events import OutboundEventRow, emit, read_after
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
    assert events[0].seq == kept.seq and events[0].id.startswith("evt_")
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
def test_numbers_follow_commit_order_across_concurrent_transactions(pg_url: str):
    """A transaction that emits first but commits last must not leave a hole a reader passes: the
    second emitter waits on the clock row, so its number is higher and visible after. (PostgreSQL
    only: SQLite has one writer, so its order is that of the commits anyway.)"""
    engine = make_engine(pg_url)
    create_schema(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbound_events"))
    first_emitted, second_done = threading.Event(), threading.Event()
    seqs: dict[str, int] = {}
    overtaken: list[bool] = []

    def slow() -> None:
        with Session(engine) as session:
            seqs["slow"] = emit(session, "order.ready", {}, subject_id="slow", occurred_at=T0).seq
            first_emitted.set()
            overtaken.append(second_done.wait(0.5))  # the other one must be held meanwhile
            session.commit()

    def fast() -> None:
        first_emitted.wait(5)
        with Session(engine) as session:
            seqs["fast"] = emit(session, "order.ready", {}, subject_id="fast", occurred_at=T0).seq
            session.commit()
        second_done.set()

    threads = [threading.Thread(target=slow), threading.Thread(target=fast)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert overtaken == [False]
    assert seqs["slow"] < seqs["fast"]
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(OutboundEventRow)).scalar() == 2
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM outbound_events"))
    engine.dispose()


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
