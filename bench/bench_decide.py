"""Benchmark: send-decision throughput and outbox dispatch lag.

    .venv/bin/python bench/bench_decide.py [--decisions 50000] [--deliveries 10000]

1. decisions/s of the pure ``campaigns.decide.decide`` (one campaign with store windows, a French SMS
   fallback recipient, a 6-entry history, triggers spread over a week so every branch runs);
2. dispatch through the real outbox on a SQLite file with the local outbox provider:
   a) a backlog of N deliveries all due at once: drain time, deliveries/s, lag from due to sent;
   b) a trickle: deliveries falling due continuously while the dispatcher polls every
      ``--poll-s`` seconds (as the APScheduler job would): lag from due to sent.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import select  # noqa: E402
from sqlmodel import Session  # noqa: E402

from campaigns.decide import Recipient, decide  # noqa: E402
from campaigns.dispatcher import dispatch_due  # noqa: E402
from campaigns.limits import PastDelivery  # noqa: E402
from campaigns.model import ZoneInfo, parse_campaign  # noqa: E402
from campaigns.providers.base import Channel  # noqa: E402
from campaigns.providers.outbox_channel import OutboxProvider  # noqa: E402
from geofence.events import TransitionKind, ZoneEvent  # noqa: E402
from geofence.service.db import create_schema, make_engine  # noqa: E402
from geofence.service.tables.campaigns import Delivery  # noqa: E402
from geofence.service.tables.customers import ConsentEvent, Customer, Device  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_decisions(n: int) -> None:
    campaign = parse_campaign(
        {
            "id": "lunch",
            "name": "Lunch",
            "status": "active",
            "channel": "push_then_sms",
            "trigger": {"zone_tags": ["restaurant"], "kinds": ["enter", "dwell"]},
            "templates": {"fr": {"body": "-10% chez {store_name}"}},
            "windows": [
                {"days": "mon-fri", "start": "11:30", "end": "14:00"},
                {"days": "fri-sat", "start": "22:00", "end": "01:00"},
            ],
            "out_of_window": {"mode": "defer", "max_delay_s": 6 * 3600},
            "advertiser": "Lumière",
            "sender": "36111",
        }
    )
    zone = ZoneInfo(
        id="z1",
        name="Café",
        tz="Europe/Paris",
        tags=frozenset({"restaurant"}),
        country="FR",
        lat=48.8566,
        lng=2.3522,
    )
    recipient = Recipient(
        customer_id="c1",
        consents={"location_offers": True, "sms_marketing": True},
        locale="fr",
        tz="Europe/Paris",
        country="FR",
        subdivision="57",
        phone_e164="+33612345678",
        push_token_live=False,
        first_name="Ana",
    )
    start = datetime(2026, 3, 23, 0, 0, tzinfo=UTC)  # a week that includes the spring DST change
    history = [PastDelivery(f"c{i}", f"z{i}", None, "sms", start - timedelta(days=i)) for i in range(6)]
    instants = [start + timedelta(minutes=(i * 37) % (7 * 24 * 60)) for i in range(n)]
    events = [
        ZoneEvent(
            id=f"e{i}",
            zone_id="z1",
            device_id="d1",
            kind=TransitionKind.ENTER,
            at=at,
            visit_id=f"v{i}",
            reason="bench",
        )
        for i, at in enumerate(instants)
    ]
    outcomes: dict[str, int] = {}
    t0 = time.perf_counter()
    for event in events:
        decision = decide(event, campaign, zone, recipient, history, event.at)
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
    elapsed = time.perf_counter() - t0
    print(
        f"decide(): {n} decisions in {elapsed:.2f} s = {n / elapsed:,.0f} decisions/s "
        f"({elapsed / n * 1e6:.1f} µs each); outcomes {outcomes}"
    )


def _world(session: Session, at: datetime) -> None:
    session.add(Customer(id="cust1", phone_e164="+33612345678", phone_hash="h", created_at=at))
    session.flush()
    session.add(Device(id="dev1", customer_id="cust1", push_token="tok-1", created_at=at))
    for i, purpose in enumerate(("location_offers", "push_marketing", "sms_marketing")):
        session.add(
            ConsentEvent(
                customer_id="cust1",
                seq=i + 1,
                purpose=purpose,
                granted=True,
                occurred_at=at - timedelta(days=1),
                recorded_at=at - timedelta(days=1),
                source="app_screen",
            )
        )
    session.commit()


def _rows(n: int, due: list[datetime], prefix: str) -> list[Delivery]:
    now = datetime.now(UTC)
    return [
        Delivery(
            idempotency_key=f"{prefix}{i}",
            campaign_id="c1",
            customer_id="cust1",
            device_id="dev1",
            zone_id="z1",
            channel="push",
            body="Bonjour",
            title="Offre",
            due_at=due[i],
            expires_at=now + timedelta(hours=3),
            created_at=now,
            data={"campaign_id": "c1"},
        )
        for i in range(n)
    ]


def _lags(engine, prefix: str, started: datetime | None = None) -> list[float]:  # type: ignore[no-untyped-def]
    """Seconds from due (or from when the dispatcher started, if later) to sent."""
    with Session(engine) as session:
        rows = session.execute(
            select(Delivery.due_at, Delivery.sent_at).where(Delivery.idempotency_key.like(f"{prefix}%"))
        ).all()  # type: ignore[attr-defined]
    start = started or datetime.min.replace(tzinfo=UTC)
    return [
        (s.replace(tzinfo=UTC) - max(d.replace(tzinfo=UTC), start)).total_seconds()
        for d, s in rows
        if s is not None
    ]


def bench_dispatch(n: int, trickle: int, poll_s: float, workdir: Path) -> None:
    engine = make_engine(f"sqlite:///{workdir}/bench.db")
    create_schema(engine)
    now = lambda: datetime.now(UTC)  # noqa: E731
    outbox_dir = workdir / "outbox"
    providers = {c.value: OutboxProvider(c, outbox_dir=outbox_dir, echo=False, clock=now) for c in Channel}
    with Session(engine) as session:
        _world(session, now())
    # a) backlog
    due = now()
    with Session(engine) as session:
        session.add_all(_rows(n, [due] * n, "b"))
        session.commit()
    started = now()
    t0 = time.perf_counter()
    stats = dispatch_due(engine, providers=providers, now=now, batch=200, max_batches=10**6)
    elapsed = time.perf_counter() - t0
    lags = _lags(engine, "b", started)  # rows were due while they were being inserted
    print(
        f"dispatch backlog: {stats.claimed} deliveries ({stats.by_status}) in {elapsed:.2f} s = "
        f"{stats.claimed / elapsed:,.0f} deliveries/s; lag due->sent p50 {pct(lags, 0.5):.2f} s, "
        f"p95 {pct(lags, 0.95):.2f} s, max {max(lags):.2f} s"
    )
    # b) trickle: rows fall due over ~5 s while a dispatcher polls like the scheduled job
    start = now() + timedelta(seconds=0.5)
    spread = [start + timedelta(seconds=5 * i / trickle) for i in range(trickle)]
    with Session(engine) as session:
        session.add_all(_rows(trickle, spread, "t"))
        session.commit()
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            dispatch_due(engine, providers=providers, now=now, batch=200)
            stop.wait(poll_s)

    worker = threading.Thread(target=loop)
    worker.start()
    time.sleep(5.5 + 2 * poll_s + 1.0)
    stop.set()
    worker.join()
    lags = _lags(engine, "t")
    print(
        f"dispatch trickle: {len(lags)}/{trickle} sent over 5 s, polling every {poll_s} s; lag due->sent "
        f"p50 {pct(lags, 0.5) * 1000:.0f} ms, p95 {pct(lags, 0.95) * 1000:.0f} ms, "
        f"max {max(lags) * 1000:.0f} ms (mean {statistics.mean(lags) * 1000:.0f} ms)"
    )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--trickle", type=int, default=1_000)
    parser.add_argument("--poll-s", type=float, default=0.5)
    args = parser.parse_args()
    bench_decisions(args.decisions)
    with tempfile.TemporaryDirectory() as tmp:
        bench_dispatch(args.deliveries, args.trickle, args.poll_s, Path(tmp))


if __name__ == "__main__":
    main()
