"""Real processes for the cross-process tests: ``geofence serve`` API processes and a ``geofence worker``
on one database, on free loopback ports, stopped (or ``kill -9``-ed) by their pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from geofence.service.db import create_schema, make_engine

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def process_env(database_url: str, workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFENCE_")}
    env.update({
        "GEOFENCE_ENV": "test", "GEOFENCE_DATABASE_URL": database_url, "GEOFENCE_AUTH_REQUIRED": "false",
        "GEOFENCE_HASH_KEY": "test-hash-key-not-secret", "GEOFENCE_PUBLIC_BASE_URL": "http://127.0.0.1:8000",
        "GEOFENCE_MIGRATE_ON_START": "false", "GEOFENCE_OUTBOX_DIR": str(workdir / "outbox"),
        "GEOFENCE_EXPORT_DIR": str(workdir / "exports"), "GEOFENCE_LIMITS__DEVICE_RATE_PER_S": "0",
        "GEOFENCE_LIMITS__KEY_RATE_PER_S": "0", "GEOFENCE_LOG__LEVEL": "WARNING",
    })
    env.update(extra)
    return env


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-c", "from geofence.service.cli import main; main()", *args]


class Api:
    """One ``geofence serve`` process (one uvicorn worker, no jobs: as under ``--workers N``)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            _cli("serve", "--port", str(self.port), "--no-jobs"), cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"API process exited with {self.proc.returncode}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"API on port {self.port} not ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()


def post_fixes(
    client: httpx.Client, url: str, fixes: list[dict[str, object]], *, attempts: int = 4
) -> httpx.Response:
    """``POST /v1/locations`` as a mobile app should: the same body again when the answer was lost (a
    keep-alive connection the server closed as the request went out, a timeout) or was 503; the stored
    answer (``ingest_answers``) makes the retry safe. Any other answer is returned to be checked."""
    for attempt in range(attempts):
        try:
            answer = client.post(f"{url}/v1/locations", json={"fixes": fixes}, timeout=30)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
            continue
        if answer.status_code != 503 or attempt == attempts - 1:
            return answer
        time.sleep(float(answer.headers.get("retry-after", "1")))
    raise AssertionError("unreachable")


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(_cli("worker"), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextmanager
def fresh_postgres(admin_url: str) -> Iterator[str]:
    """A new PostgreSQL database with the schema, dropped afterwards (the processes share it)."""
    name = f"geofence_procs_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    create_schema(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def api_processes(env: dict[str, str], workdir: Path, n: int) -> Iterator[list[Api]]:
    apis = [Api(env, workdir / f"api-{i}.log") for i in range(n)]
    try:
        for api in apis:
            api.wait_ready()
        yield apis
    finally:
        for api in apis:
            api.stop()


# -- a world: one store zone, one always-open campaign, consenting customers ---------------------------
STORE = (48.8566, 2.3522)  # (lat, lng)
ZONE_ID = "store"


def seed_world(database_url: str, devices: int, *, zone: bool = True) -> None:
    """``devices`` customers (``dev-<i>``) with every consent, the campaign ``offer`` (ENTER at the
    store, any time, push), and the store's zone itself unless ``zone`` is False."""
    from datetime import UTC, datetime, timedelta

    from sqlmodel import Session

    from geofence.service.tables.zones import ZoneRow
    from tests.service.campaign_factories import add_campaign, add_customer
    from zones.model import Circle, Zone

    at = datetime.now(UTC) - timedelta(days=2)
    engine = make_engine(database_url)
    with Session(engine) as session:
        if zone:
            z = Zone(ZONE_ID, "Store", Circle(STORE[0], STORE[1], 80), tags=frozenset({"restaurant"}))
            session.add(ZoneRow(id=ZONE_ID, name="Store", data=z.to_dict(), created_at=at, updated_at=at))
            session.commit()
        add_campaign(session, at, {
            "id": "offer", "name": "Offer", "status": "active", "trigger": {"zone_ids": [ZONE_ID]},
            "channel": "push", "templates": {"fr": {"title": "Hi", "body": "Bonjour {first_name}"}},
        })
        for i in range(devices):
            add_customer(session, at, cid=f"cust-{i}", device_id=f"dev-{i}", phone=f"+336{i:08d}")
    engine.dispose()


def decided(database_url: str) -> dict[str, int]:
    """Deliveries (sent, pending or skipped) per zone event."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, count(*) FROM deliveries GROUP BY event_id")).all()
    engine.dispose()
    return {str(r[0]): int(r[1]) for r in rows}


def crash_loop(database_url: str, workdir: Path, *, kills: int, events: int, seed: int = 1) -> list[int]:
    """Commit ``events`` ENTER events to the log, then start ``geofence worker`` and ``kill -9`` it while
    it decides them, ``kills`` times (each time once it has decided something more, plus a random
    0-60 ms), then let one worker finish. Returns how many events were decided at each kill."""
    import random
    from datetime import UTC, datetime

    from geofence.events import TransitionKind, ZoneEvent
    from geofence.service.event_log import append

    rng = random.Random(seed)
    now = datetime.now(UTC)
    engine = make_engine(database_url)
    log_events = [
        ZoneEvent(id=f"ev-{i:05d}", zone_id=ZONE_ID, device_id=f"dev-{i}", kind=TransitionKind.ENTER, at=now,
                  visit_id=f"visit-{i}", reason="test")
        for i in range(events)
    ]
    for start in range(0, events, 100):  # several transactions, as several ingests would
        append(engine, log_events[start : start + 100], recorded_at=now)
    engine.dispose()
    env = process_env(database_url, workdir, GEOFENCE_SCHEDULER__EVENTS_POLL_S="0.2")
    at_kill: list[int] = []
    for _ in range(kills):
        before = len(decided(database_url))
        if before >= events:
            break
        worker = start_worker(env, workdir / "worker.log")
        deadline = time.monotonic() + 60
        while len(decided(database_url)) <= before and time.monotonic() < deadline:
            if worker.poll() is not None:
                raise RuntimeError(f"worker exited with {worker.returncode}: see {workdir / 'worker.log'}")
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.06))
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
        at_kill.append(len(decided(database_url)))
    worker = start_worker(env, workdir / "worker.log")
    deadline = time.monotonic() + 120
    while len(decided(database_url)) < events and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(worker)
    return at_kill


# -- tracks: devices walking in and out of two zones -------------------------------------------------
KIOSK = (48.8566 + 150 / 111_195.0, 2.3522)  # 150 m north of the store


def zones() -> list[object]:
    from zones.model import Circle, Zone

    return [
        Zone(ZONE_ID, "Store", Circle(STORE[0], STORE[1], 80), tags=frozenset({"restaurant"})),
        Zone("kiosk", "Kiosk", Circle(KIOSK[0], KIOSK[1], 40)),
    ]


def seed_zones(database_url: str) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlmodel import Session

    from geofence.service.tables.zones import ZoneRow

    at = datetime.now(UTC) - timedelta(days=2)
    engine = make_engine(database_url)
    with Session(engine) as session:
        for z in zones():
            session.add(ZoneRow(id=z.id, name=z.name, data=z.to_dict(), created_at=at, updated_at=at))  # type: ignore[attr-defined]
        session.commit()
    engine.dispose()


def walk(device: int, start_at: object, *, fixes: int = 100, every_s: int = 10) -> list[dict[str, object]]:
    """A device's fixes as JSON documents: it walks (1-2 m/s) between random waypoints around the store
    and the kiosk — outside, inside, lingering past the dwell time — deterministically per device."""
    import math
    import random
    from datetime import timedelta

    rng = random.Random(device)
    waypoints = [(rng.uniform(-250, 250), rng.uniform(-250, 250)) for _ in range(6)]
    for k in (1, 3):  # stops inside a zone: the store's or the kiosk's centre, plus a few metres
        centre_n = 0.0 if rng.random() < 0.6 else 150.0
        waypoints.insert(k, (centre_n + rng.uniform(-15, 15), rng.uniform(-15, 15)))
    docs: list[dict[str, object]] = []
    north, east = waypoints[0]
    target = 1
    for i in range(fixes):
        goal = waypoints[target % len(waypoints)]
        dn, de = goal[0] - north, goal[1] - east
        dist = math.hypot(dn, de)
        step = every_s * rng.uniform(1.0, 2.0)
        lingering = target in (1, 3) and dist < 20 and rng.random() < 0.9
        if lingering:
            north, east = goal[0] + rng.uniform(-3, 3), goal[1] + rng.uniform(-3, 3)
        elif dist <= step:
            north, east = goal
            target += 1
        else:
            north, east = north + dn / dist * step, east + de / dist * step
        lat = STORE[0] + north / 111_195.0
        lng = STORE[1] + east / (111_195.0 * math.cos(math.radians(STORE[0])))
        docs.append({
            "device_id": f"dev-{device}", "lat": lat, "lng": lng, "accuracy_m": 10.0,
            "recorded_at": (start_at + timedelta(seconds=i * every_s)).isoformat(),  # type: ignore[operator]
        })
    return docs


def events_of(database_url: str) -> list[tuple[str, str, str, str, str]]:
    """(device, zone, kind, at, reason) of every zone event, sorted."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT device_id, zone_id, kind, at, reason FROM zone_events")).all()
    engine.dispose()
    return sorted((str(r[0]), str(r[1]), str(r[2]), _iso(r[3]), str(r[4])) for r in rows)


def _iso(value: object) -> str:
    from datetime import UTC, datetime

    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def events_of_one_process(
    workdir: Path, requests: dict[int, list[list[dict[str, object]]]]
) -> list[tuple[str, str, str, str, str]]:
    """The reference: the same requests, each device's in order, through one in-process service (SQLite)."""
    from datetime import UTC, datetime

    import msgspec

    from geofence.fixes import LocationFix
    from geofence.service.runtime import bootstrap
    from geofence.service.settings import Settings

    workdir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{workdir}/reference.db"
    settings = Settings(env="test", hash_key="test-hash-key-not-secret", public_base_url="http://127.0.0.1:8000",
                        database_url=url, scheduler={"enabled": False}, auth_required=False,
                        outbox_dir=workdir / "ref-outbox", export_dir=workdir / "ref-exports")
    runtime = bootstrap(settings)
    service = runtime.geofence
    service.location_consent = None  # the reference has no customers: no gate
    service.save_zones(zones(), at=datetime.now(UTC))
    decode = msgspec.json.Decoder(list[LocationFix])
    for device_requests in requests.values():
        for body in device_requests:
            service.ingest(decode.decode(msgspec.json.encode(body)), at=datetime.now(UTC))
    runtime.engine.dispose()
    return events_of(url)
