"""Dispatchers: two at once on a real PostgreSQL never double-send; the job body; throughput pacing."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.dispatcher import Pacer, dispatch_due
from geofence.service import clock
from geofence.service.db import make_engine
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import SENT, Delivery
from geofence.service.tables.customers import ConsentEvent, Customer, Device
from geofence.service.wiring.campaigns import dispatch_job
from tests.service.campaign_factories import RecordingProvider, add_customer, add_delivery

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ROWS = 50
ROUNDS = 12


def _fill(engine: Engine, n: int, at: datetime) -> None:
    with Session(engine) as session:
        session.add_all(
            Delivery(
                idempotency_key=f"k{i}",
                campaign_id="c1",
                customer_id="cust1",
                device_id="dev1",
                zone_id="z1",
                channel="push",
                body="b",
                due_at=at - timedelta(seconds=i % 7),
                expires_at=at + timedelta(days=1),
                created_at=at,
            )
            for i in range(n)
        )
        session.commit()


def _clear(engine: Engine) -> None:
    with Session(engine) as session:
        for table in (Delivery, ConsentEvent, Device, Customer):
            session.execute(delete(table))
        session.commit()


@pytest.mark.postgres
def test_two_dispatchers_on_postgres_never_double_send(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        for round_no in range(ROUNDS):
            _clear(engine)
            with Session(engine) as session:
                add_customer(session, clock.now())
            _fill(engine, ROWS, clock.now())
            provider = RecordingProvider()
            barrier = threading.Barrier(2)
            errors: list[BaseException] = []

            def run(
                name: str,
                provider: RecordingProvider = provider,
                barrier: threading.Barrier = barrier,
                errors: list[BaseException] = errors,
            ) -> None:
                try:
                    barrier.wait()
                    dispatch_due(engine, providers={"push": provider}, now=clock.now, batch=7, worker=name)
                except BaseException as exc:  # surfaced below
                    errors.append(exc)

            threads = [threading.Thread(target=run, args=(f"d{i}",)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert not errors, errors
            sent_ids = Counter(m.delivery_id for m in provider.sent)
            assert max(sent_ids.values()) == 1, f"round {round_no}: double send"
            assert len(sent_ids) == ROWS
            with Session(engine) as session:
                statuses = dict(
                    session.execute(select(Delivery.status, func.count()).group_by(Delivery.status)).all()
                )
            assert statuses == {SENT: ROWS}
    finally:
        _clear(engine)
        engine.dispose()


def test_two_dispatchers_on_sqlite_never_double_send(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        add_customer(session, clock.now())
    _fill(sqlite_engine, ROWS, clock.now())
    provider = RecordingProvider()
    threads = [
        threading.Thread(
            target=dispatch_due,
            args=(sqlite_engine,),
            kwargs={"providers": {"push": provider}, "now": clock.now, "batch": 5, "worker": n},
        )
        for n in ("a", "b")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    sent = Counter(m.delivery_id for m in provider.sent)
    assert len(sent) == ROWS and max(sent.values()) == 1


def test_dispatch_job_uses_runtime_providers_and_settings(engine: Engine, session: Session) -> None:
    add_customer(session, clock.now())
    add_delivery(session, clock.now() - timedelta(seconds=3), key="k1")
    provider = RecordingProvider()
    runtime = bootstrap(Settings(env="local", database_url="sqlite://"), engine)
    runtime.providers = {"push": provider}
    stats = dispatch_job(runtime)
    assert stats.by_status == {SENT: 1}
    assert stats.lags_s and 2.5 <= stats.lags_s[0] < 60
    assert len(provider.sent) == 1


def test_pacer_gives_rows_back_over_the_sender_rate(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        add_customer(session, T0)
    _fill(sqlite_engine, 5, T0)
    provider = RecordingProvider()
    pacer = Pacer(rates={"push": 2.0})
    stats = dispatch_due(sqlite_engine, providers={"push": provider}, now=lambda: T0, pace=pacer)
    assert stats.by_status == {SENT: 2, "pending": 3}  # a burst of 2, the rest later
    with Session(sqlite_engine) as session:
        waiting = session.execute(select(Delivery).where(Delivery.status == "pending")).scalars().all()
    assert all(row.attempts == 0 for row in waiting)  # pacing is not a failed attempt
    assert min(row.due_at.replace(tzinfo=UTC) for row in waiting) > T0
    later = dispatch_due(
        sqlite_engine, providers={"push": provider}, now=lambda: T0 + timedelta(seconds=10), pace=pacer
    )
    assert later.by_status == {SENT: 2, "pending": 1}  # still at most a burst of 2 at once
    last = dispatch_due(
        sqlite_engine, providers={"push": provider}, now=lambda: T0 + timedelta(seconds=11), pace=pacer
    )
    assert last.by_status == {SENT: 1}
    assert len(provider.sent) == 5


KILLED_DISPATCHER = """
import os, signal, sys
from datetime import timedelta
from campaigns.dispatcher import dispatch_due
from geofence.service import clock
from geofence.service.db import make_engine

class DiesMidSend:
    name = "dies"
    def send(self, msg):
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies with the lease taken, nothing recorded

dispatch_due(make_engine(sys.argv[1]), providers={"push": DiesMidSend()}, now=clock.now,
             lease=timedelta(seconds=2), batch=10)
"""


def test_a_dispatcher_killed_mid_send_never_resends_the_row_in_flight_and_sends_the_rest(
    engine: Engine, session: Session
) -> None:
    import subprocess
    import sys
    import time
    from pathlib import Path

    add_customer(session, clock.now())
    _fill(engine, 5, clock.now())
    url = engine.url.render_as_string(hide_password=False)
    root = Path(__file__).resolve().parents[2]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_DISPATCHER, url], cwd=root, timeout=60, capture_output=True, text=True
    )
    assert child.returncode == -9, child.stderr
    with Session(engine) as s:
        assert set(s.execute(select(Delivery.status)).scalars()) == {"sending"}
    provider = RecordingProvider()
    assert dispatch_due(engine, providers={"push": provider}, now=clock.now).claimed == 0  # lease held
    time.sleep(2.2)
    stats = dispatch_due(engine, providers={"push": provider}, now=clock.now)
    # The first row's send had started when the process died: it may have gone, so it is dropped with
    # a reason (this provider cannot be asked); the four never started are sent after the lease.
    assert stats.by_status == {SENT: 4, "failed": 1}
    assert len({m.delivery_id for m in provider.sent}) == 4 == len(provider.sent)
    with Session(engine) as s:
        rows = s.execute(select(Delivery)).scalars().all()
    dropped = [r for r in rows if r.status == "failed"]
    assert [(r.reason, r.error_code) for r in dropped] == [("ambiguous_send", "ambiguous_send")]
    assert dropped[0].send_started_at is not None
    assert dropped[0].id not in {m.delivery_id for m in provider.sent}
    assert {r.attempts for r in rows} == {2}


@dataclass
class SlowProvider(RecordingProvider):
    """Each send takes ``took`` of the simulated clock; one may take up to ``send_budget_s``."""

    clock: list[datetime] = field(default_factory=lambda: [T0])
    took: timedelta = timedelta(seconds=20)
    send_budget_s: float = 25.0

    def send(self, msg):  # type: ignore[no-untyped-def]
        result = super().send(msg)
        self.clock[0] += self.took
        return result


def test_a_row_is_sent_only_while_the_lease_outlasts_the_longest_send(sqlite_engine: Engine) -> None:
    with Session(sqlite_engine) as session:
        add_customer(session, T0)
    _fill(sqlite_engine, 5, T0)
    provider = SlowProvider()
    lease = timedelta(seconds=60)

    def dispatch() -> dict[str, int]:
        return dispatch_due(sqlite_engine, providers={"push": provider}, now=lambda: provider.clock[0],
                            lease=lease).by_status

    # claimed at T0 (lease until T0+60): sent at T0 and T0+20; at T0+40 a send might end after T0+65
    assert dispatch() == {SENT: 2, "pending": 3}
    with Session(sqlite_engine) as session:
        back = session.execute(select(Delivery).where(Delivery.status == "pending")).scalars().all()
    assert len(back) == 3
    assert all(row.attempts == 0 and row.lease_until is None for row in back)  # not an attempt
    assert {row.due_at.replace(tzinfo=UTC) for row in back} <= {T0 - timedelta(seconds=s) for s in range(7)}
    assert dispatch() == {SENT: 2, "pending": 1}  # claimed again at once, by the next dispatch
    assert dispatch() == {SENT: 1}
    assert Counter(m.delivery_id for m in provider.sent).most_common(1)[0][1] == 1
    assert len(provider.sent) == 5


def test_a_provider_slower_than_the_lease_is_refused_at_start_up(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from campaigns.providers import build_providers

    settings = Settings(channels=["twilio"], outbox_dir=tmp_path, scheduler={"lease_s": 30},
                        twilio={"account_sid": "AC" + "0" * 32, "auth_token": "t", "from_number": "36123",
                                "timeout_s": 15})
    with pytest.raises(ValueError, match=r"up to 30 s .*LEASE_S=30"):
        build_providers(settings, now=clock.now)
    settings.twilio.timeout_s = 14
    assert build_providers(settings, now=clock.now)["sms"].send_budget_s == 28
