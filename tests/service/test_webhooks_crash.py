"""``kill -9`` of the worker while it relays and sends webhooks: nothing lost, a repeat only with the
same ``webhook-id``, each endpoint's events in log order per stream — zone events and store-side events
(real processes, PostgreSQL)."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session

from campaigns.storage.outbound_events import emit
from geofence.events import TransitionKind, ZoneEvent
from geofence.service.db import make_engine
from geofence.service.event_log import append
from geofence.service.tables.webhooks import WebhookEndpointRow
from geofence.service.webhook_signing import new_secret
from tests.service.processes import fresh_postgres, process_env, start_worker, stop
from tests.service.webhook_receiver import Receiver, running_receiver

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
EVENTS, STORE_EVENTS, KILLS = 200, 100, 3


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


def first_seen(ids: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in ids:
        seen.setdefault(i, None)
    return list(seen)


def test_kill_9_of_the_sender_loses_nothing_and_repeats_only_with_the_same_webhook_id(
    pg_database: str, tmp_path: Path, receiver: Receiver
) -> None:
    now = datetime.now(UTC)
    receiver.secret = new_secret()
    engine = make_engine(pg_database)
    with Session(engine) as s:
        s.add(WebhookEndpointRow(id="ep", url=receiver.url, event_types=["zone.*", "consent.*"],
                                 secrets=[{"secret": receiver.secret, "until": ""}], created_at=now))
        s.commit()
    events = [
        ZoneEvent(id=f"ev-{i:04d}", zone_id="store", device_id=f"dev-{i % 7}", kind=TransitionKind.ENTER,
                  at=now, visit_id=f"v{i}", reason="test")
        for i in range(EVENTS)
    ]
    for start in range(0, EVENTS, 50):
        append(engine, events[start : start + 50], recorded_at=now)
    store_ids = []
    for i in range(STORE_EVENTS):  # as the consent ledger writes them, one transaction each
        with Session(engine) as s:
            payload = {"customer_id": f"c{i}", "purpose": "sms_marketing", "granted": False}
            store_ids.append(emit(s, "consent.changed", payload, subject_id=f"c{i}", occurred_at=now).id)
            s.commit()
    everything = EVENTS + STORE_EVENTS
    engine.dispose()
    env = process_env(pg_database, tmp_path, GEOFENCE_SCHEDULER__EVENTS_POLL_S="0.2",
                      GEOFENCE_WEBHOOKS__ALLOW_PRIVATE_TARGETS="true")
    rng, at_kill = random.Random(1), []
    for _ in range(KILLS):
        before = len(receiver.accepted)
        worker = start_worker(env, tmp_path / "worker.log")
        deadline = time.monotonic() + 60
        while len(receiver.accepted) <= before and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-2000:]
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.03))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        at_kill.append(len(set(receiver.event_ids())))
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 120
        while len(set(receiver.event_ids())) < everything and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        stop(worker)
    assert all(0 < n < everything for n in at_kill), at_kill  # each kill landed mid-stream
    got = receiver.event_ids()
    assert first_seen([i for i in got if i.startswith("ev-")]) == [e.id for e in events]  # in log order
    assert first_seen([i for i in got if i.startswith("evt_")]) == store_ids  # none lost, in order
    assert len(got) - everything <= KILLS  # at most the one in flight (one at a time) repeated per kill
    ids: dict[str, set[str]] = {}
    for r in receiver.accepted:
        ids.setdefault(r.body["data"]["event_id"], set()).add(r.webhook_id)
    assert all(len(v) == 1 for v in ids.values())  # a repeat carries the same webhook-id
    assert receiver.bad_signatures == 0
