"""No marketing message reaches a person twice, whatever fails: two real ``geofence worker`` processes on
PostgreSQL send through the real FCM and Twilio providers to the loopback fakes, while a worker is
killed (``kill -9``) mid-send, their database connections are ended (``pg_terminate_backend``), and the
fakes answer 503 or hold requests past the client's timeout. The fakes count what they accepted per
recipient: never more than one. (bench/send_faults.py runs the same with more rounds.)"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.service import clock
from geofence.service.db import make_engine
from tests.conftest import throwaway_postgres
from tests.fakes.fcm_transport import PROJECT, FakeFcmServer, service_account_file
from tests.fakes.loopback import Chaos
from tests.fakes.twilio_http import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.twilio_server import FakeTwilioServer
from tests.service.campaign_factories import add_customer, add_delivery

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
GEOFENCE = str(Path(sys.executable).parent / "geofence")
TERMINAL_WAIT_S = 120.0


@pytest.fixture
def own_pg_url() -> Iterator[str]:
    """A database of its own: the workers poll every due row in it."""
    with throwaway_postgres() as url:
        yield url


def fill(engine: Engine, n: int) -> None:
    """``n`` customers, each with one SMS or one push delivery due now (one recipient per delivery)."""
    at = clock.now()
    with Session(engine) as session:
        for i in range(n):
            add_customer(session, at, cid=f"c{i}", device_id=f"d{i}", phone=f"+336{i:08d}")
            add_delivery(session, at, key=f"k{i}", cid=f"c{i}", device_id=f"d{i}",
                         channel="sms" if i % 2 else "push")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Workers:
    """``geofence worker`` processes, each with its own application_name and metrics port."""

    def __init__(self, url: str, fcm: FakeFcmServer, twilio: FakeTwilioServer, tmp: Path, *,
                 timeout_s: float = 0.3, lease_s: int = 4) -> None:
        self.url, self.tmp = url, tmp
        self.env = os.environ | {
            "GEOFENCE_ENV": "local",
            "GEOFENCE_MIGRATE_ON_START": "false",
            "GEOFENCE_CHANNELS": '["fcm", "twilio"]',
            "GEOFENCE_OUTBOX_DIR": str(tmp / "outbox"),
            "GEOFENCE_EXPORT_DIR": str(tmp / "exports"),
            "GEOFENCE_FCM__CREDENTIALS_FILE": str(service_account_file(tmp / "sa.json", fcm)),
            "GEOFENCE_FCM__PROJECT_ID": PROJECT,
            "GEOFENCE_FCM__BASE_URL": fcm.base_url,
            "GEOFENCE_FCM__TIMEOUT_S": str(timeout_s),
            "GEOFENCE_TWILIO__ACCOUNT_SID": ACCOUNT_SID,
            "GEOFENCE_TWILIO__AUTH_TOKEN": AUTH_TOKEN,
            "GEOFENCE_TWILIO__FROM_NUMBER": "36123",
            "GEOFENCE_TWILIO__BASE_URL": twilio.base_url,
            "GEOFENCE_TWILIO__TIMEOUT_S": str(timeout_s),
            "GEOFENCE_SCHEDULER__DISPATCH_EVERY_S": "0.2",
            "GEOFENCE_SCHEDULER__LEASE_S": str(lease_s),
            "GEOFENCE_LOG__LEVEL": "WARNING",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    def start(self, name: str) -> None:
        self.ports[name] = free_port()
        env = self.env | {
            "GEOFENCE_DATABASE_URL": f"{self.url}?application_name=faults-{name}",
            "GEOFENCE_WORKER_METRICS_PORT": str(self.ports[name]),
        }
        with (self.tmp / f"{name}.log").open("ab") as log:  # the child keeps its own descriptor
            proc = subprocess.Popen([GEOFENCE, "worker"], cwd=ROOT, env=env, stdout=log, stderr=log)
        self.procs[name] = proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL

    def wait_started(self, timeout_s: float = 90.0) -> None:
        """Until every worker serves its /metrics: its runtime is built and its loops start. On a loaded
        machine that takes many seconds; a fault window opened before would fall on no worker at all."""
        deadline = time.monotonic() + timeout_s
        for name, proc in self.procs.items():
            while True:
                assert proc.poll() is None, (self.tmp / f"{name}.log").read_text()[-3000:]
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{self.ports[name]}/metrics", timeout=5).read()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"worker {name} did not start in {timeout_s} s"
                    time.sleep(0.1)

    def metric(self, name: str, family: str) -> dict[tuple[tuple[str, str], ...], float]:
        url = f"http://127.0.0.1:{self.ports[name]}/metrics"
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        return {
            tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(body) if f.name == family
            for s in f.samples if s.name == family + "_total"
        }

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def wait_until_settled(engine: Engine, workers: Workers) -> None:
    """Until no row waits. A retry after a 503 is due in 30 s or more (the outbox's backoff): make it due
    at once, as if the time had passed, so the retries happen within the test."""
    deadline = time.monotonic() + TERMINAL_WAIT_S
    while time.monotonic() < deadline:
        with engine.begin() as conn:
            conn.execute(text("UPDATE deliveries SET due_at = now() WHERE status = 'pending' AND attempts > 0"
                              " AND due_at > now()"))
        if not scalar(engine, "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending')"):
            return
        for name, proc in workers.procs.items():
            log = (workers.tmp / f"{name}.log").read_text()[-3000:]
            assert proc.poll() is None, f"worker {name} died: {log}"
        time.sleep(0.2)
    raise AssertionError("deliveries still waiting: " + str(
        scalar(engine, "SELECT string_agg(status || '/' || coalesce(reason, '-'), ',') FROM deliveries"
               " WHERE status IN ('pending', 'sending')")))


def check_once_each(engine: Engine, fcm: FakeFcmServer, twilio: FakeTwilioServer, n: int) -> Counter[str]:
    """0 duplicates; every delivery settled with a status and, when not sent, a reason."""
    assert max(twilio.accepted.values(), default=0) <= 1, twilio.accepted.most_common(3)
    assert max(fcm.accepted.values(), default=0) <= 1, fcm.accepted.most_common(3)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT d.channel, d.status, d.reason, c.phone_e164, v.push_token FROM deliveries d"
            " JOIN customers c ON c.id = d.customer_id JOIN devices v ON v.id = d.device_id"
        )).all()
    assert len(rows) == n
    outcomes: Counter[str] = Counter()
    for channel, status, reason, phone, token in rows:
        outcomes[f"{channel}:{status}:{reason or '-'}"] += 1
        accepted = twilio.accepted[phone] if channel == "sms" else fcm.accepted[token]
        if status in ("sent", "queued"):
            assert accepted == 1, (channel, status, reason)  # recorded sent: the fake has it, once
        else:
            assert status == "failed" and reason, (channel, status, reason)  # never lost without a reason
            if channel == "sms":
                # Twilio's list settles every SMS it accepted: only pushes can be ambiguous and sent.
                assert accepted == 0, (status, reason)
    return outcomes


def test_kill_9_of_a_worker_mid_send_never_sends_a_message_twice(own_pg_url: str, tmp_path: Path) -> None:
    n, kills = 40, 3
    engine = make_engine(own_pg_url)
    # Each request is held 0.3 s (answered well within the 0.6 s timeout): a kill lands while one is held.
    with FakeFcmServer(delay_s=0.3) as fcm, FakeTwilioServer(delay_s=0.3) as twilio:
        workers = Workers(own_pg_url, fcm, twilio, tmp_path, timeout_s=0.6, lease_s=5)
        try:
            workers.start("a")
            workers.start("b")
            fill(engine, n)
            done, in_flight = 0, []
            while done < kills:
                name = "ab"[done % 2]
                pid = workers.procs[name].pid
                # Wait for this worker to have a send in flight (stamped as started by this very claim, whose
                # last write it was: not a row it is settling), then kill it.
                deadline = time.monotonic() + 30
                while not (row_id := scalar(
                    engine, "SELECT min(id) FROM deliveries WHERE status = 'sending' AND reason IS NULL AND"
                    " send_started_at = updated_at AND leased_by LIKE :p", p=f"%:{pid}:%"
                )):
                    assert time.monotonic() < deadline, "the worker never sent"
                    time.sleep(0.01)
                workers.kill(name)
                in_flight.append(row_id)
                done += 1
                workers.start(name)
            wait_until_settled(engine, workers)
        finally:
            workers.stop()
        outcomes = check_once_each(engine, fcm, twilio, n)
    killed_mid_send = scalar(
        engine, "SELECT count(*) FROM deliveries WHERE reason IN ('reconciled', 'ambiguous_send')"
    )
    with engine.connect() as conn:
        query = text("SELECT reason FROM deliveries WHERE id = ANY(:ids)")
        killed_rows = conn.execute(query, {"ids": in_flight})
        killed_reasons = sorted(r[0] for r in killed_rows)
    engine.dispose()
    assert len(set(in_flight)) == kills
    # Each row in flight at a kill was settled (Twilio's list, or dropped), none was sent again.
    assert set(killed_reasons) <= {"reconciled", "ambiguous_send"} and len(killed_reasons) == kills, outcomes
    assert killed_mid_send >= kills


def test_terminated_connections_503s_and_held_requests_never_send_a_message_twice(
    own_pg_url: str, tmp_path: Path
) -> None:
    n = 120
    engine = make_engine(own_pg_url)
    chaos = Chaos(unavailable_rate=0.3, hold_rate=0.1, hold_s=0.8, seed=26)
    stop = threading.Event()
    terminated: list[int] = []

    def terminate_backends() -> None:
        rng = random.Random(11)
        while not stop.wait(rng.uniform(0.1, 0.4)):
            terminated.append(int(scalar(
                engine, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE application_name LIKE 'faults-%'") or 0))

    with FakeFcmServer(chaos=chaos) as fcm, FakeTwilioServer(chaos=chaos) as twilio:
        workers = Workers(own_pg_url, fcm, twilio, tmp_path)
        killer = threading.Thread(target=terminate_backends, daemon=True)
        try:
            workers.start("a")
            workers.start("b")
            fill(engine, n)
            workers.wait_started()  # the 6 s of faults fall on running workers, however slow their start
            killer.start()
            time.sleep(6)
            stop.set()
            killer.join(timeout=10)
            wait_until_settled(engine, workers)
            counted = Counter[str]()
            for name in workers.procs:
                for labels, value in workers.metric(name, "geofence_ambiguous_sends").items():
                    counted[dict(labels)["outcome"]] += int(value)
        finally:
            stop.set()
            workers.stop()
        outcomes = check_once_each(engine, fcm, twilio, n)
    settled = scalar(
        engine, "SELECT count(*) FROM deliveries WHERE reason IN ('reconciled', 'ambiguous_send')"
    )
    engine.dispose()
    assert sum(terminated) >= 10, terminated  # the workers' connections were really ended, many times
    assert fcm.arrived + twilio.arrived > n  # 503s were retried ...
    assert settled >= 1, outcomes  # ... and held requests were settled, not sent again
    # every settle counted happened; one may be missing from the count: a commit that reached PostgreSQL
    # as its connection was ended is in the table, and its worker, which saw an error, counted nothing
    # (seen once in a CI run: 11 counted of 12 settled, every message still sent at most once)
    assert 1 <= counted["reconciled"] + counted["dropped"] <= settled, (counted, outcomes)
