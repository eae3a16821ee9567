"""Real processes on PostgreSQL and the local NATS: 2 API processes publish a replay of 1,000 devices
while ``geofence ingest-worker`` processes are ``kill -9``-ed 20 times mid-batch; the zone events are
those of one embedded process — none lost, none twice — and each is decided once by the campaigns."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.service.bus import drop_stream, unique_stream
from tests.service.bus_support import bus_env, drop_names, own_names, require_nats, wait_drained
from tests.service.processes import (
    ROOT,
    ZONE_ID,
    Api,
    decided,
    events_of,
    events_of_one_process,
    fresh_postgres,
    post_fixes,
    process_env,
    seed_world,
    seed_zones,
    start_worker,
    stop,
    walk,
)

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DEVICES = 1000
FIXES = 20  # per device, one every 30 s: ~3,900 events (enter, dwell and exit at both zones)
KILLS = 20
ROUNDS = 10  # of FIXES // ROUNDS fixes per device, posted one every REPLAY_S / ROUNDS
REPLAY_S = 40.0  # the posting lasts this long, and a worker is killed every REPLAY_S / KILLS
WORKERS = 3  # ingest workers at a time (one of them replaced after each kill)
SENDERS = 8  # client threads, each with its own devices (a device's requests go in order)


@pytest.fixture
def pg_database(pg_url: str) -> Iterator[str]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        yield url


def start_ingest_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-c", "from geofence.service.cli import main; main()", "ingest-worker"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )


def progress(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        done = conn.execute(text("SELECT coalesce(sum(stream_seq), 0) FROM ingest_partitions")).scalar()
    engine.dispose()
    return int(done or 0)


def requests_of(senders: int, start: datetime) -> list[list[list[list[dict[str, object]]]]]:
    """Per sender, per round, its requests: 5 fixes of each of 20 of its devices."""
    tracks = {d: walk(d, start, fixes=FIXES, every_s=30) for d in range(DEVICES)}
    out: list[list[list[list[dict[str, object]]]]] = []
    for s in range(senders):
        mine = [d for d in range(DEVICES) if d % senders == s]
        out.append([
            [[fix for d in mine[g : g + 20] for fix in tracks[d][r : r + FIXES // ROUNDS]]
             for g in range(0, len(mine), 20)]
            for r in range(0, FIXES, FIXES // ROUNDS)
        ])
    return out


def working_pids(database_url: str) -> set[int]:
    """Pids of the workers that committed a partition's checkpoint last (owner: host-pid-tag)."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        owners = conn.execute(text("SELECT owner FROM ingest_partitions WHERE owner <> ''")).scalars().all()
    engine.dispose()
    return {int(o.rsplit("-", 2)[1]) for o in owners}


def test_kill_9_of_ingest_workers_20_times_loses_nothing_and_decides_nothing_twice(
    pg_database: str, tmp_path: Path
) -> None:
    url = require_nats()
    t0 = time.monotonic()
    # small fetches: many commits, to be killed in the middle of
    config = own_names(partitions=8, lease_s=3.0).model_copy(update={"fetch_batch": 8})
    start = datetime.now(UTC) - timedelta(minutes=15)
    seed_world(pg_database, DEVICES, zone=False)
    seed_zones(pg_database)
    # a zone-event stream of its own: the machine's default one (GEOFENCE_EVENTS, consumer "campaigns")
    # is shared with whatever else runs on the local server, whose events the decider would decide too
    events_stream = unique_stream()
    env = process_env(pg_database, tmp_path, GEOFENCE_SCHEDULER__SWEEP_EVERY_S="3600",
                      GEOFENCE_SCHEDULER__EVENTS_POLL_S="0.2", GEOFENCE_EVENT_STREAM__NAME=events_stream.name,
                      GEOFENCE_EVENT_STREAM__SUBJECT_PREFIX=events_stream.subject_prefix,
                      **bus_env(url, config))
    rng = random.Random(7)
    kills: list[int] = []  # progress (sum of checkpoints) at each kill
    decider = start_worker(env, tmp_path / "worker.log")
    workers = [start_ingest_worker(env, tmp_path / f"ingest-{i}.log") for i in range(WORKERS)]
    apis = [Api(env, tmp_path / f"api-{i}.log") for i in range(2)]
    try:
        # while the processes start: the requests, and the reference (one embedded process)
        senders = requests_of(SENDERS, start)
        reference = {d: [walk(d, start, fixes=FIXES, every_s=30)] for d in range(DEVICES)}
        expected = events_of_one_process(tmp_path / "embedded", reference)
        for api in apis:
            api.wait_ready()
        print(f"\nset up in {time.monotonic() - t0:.1f} s")

        failures: list[BaseException] = []  # a sender's, raised here: a thread's exception fails nothing

        def send(s: int) -> None:
            """A sender's rounds, one every REPLAY_S / ROUNDS: the replay lasts as long as the kills."""
            try:
                with httpx.Client(timeout=30) as client:
                    for r, bodies in enumerate(senders[s]):
                        while time.monotonic() < t_replay + r * REPLAY_S / ROUNDS:
                            time.sleep(0.05)
                        for k, body in enumerate(bodies):
                            answer = post_fixes(client, apis[(s + k) % 2].url, body)
                            assert answer.status_code == 200, answer.text
            except BaseException as exc:
                failures.append(exc)
                raise

        t_replay = time.monotonic()
        threads = [threading.Thread(target=send, args=(s,)) for s in range(SENDERS)]
        for t in threads:
            t.start()
        while len(kills) < KILLS:  # one kill every REPLAY_S / KILLS, of a worker that is committing
            time.sleep(max(0.0, t_replay + (len(kills) + 0.5) * REPLAY_S / KILLS - time.monotonic()))
            before = progress(pg_database)
            # a replacement's start-up takes ~2 s on a quiet box, a minute at load 25
            deadline = time.monotonic() + 180
            busy: set[int] = set()
            while time.monotonic() < deadline and not busy:
                if progress(pg_database) > before:
                    busy = working_pids(pg_database) & {w.pid for w in workers}
                time.sleep(0.02)
            assert busy, f"the replay stalled after {len(kills)} kills"
            time.sleep(rng.uniform(0, 0.1))
            victim = rng.choice([w for w in workers if w.pid in busy])
            workers.remove(victim)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait(10)
            kills.append(progress(pg_database))
            workers.append(start_ingest_worker(env, tmp_path / f"ingest-{len(kills) + WORKERS}.log"))
        for t in threads:
            t.join()
        assert not failures, failures
        t_posted = time.monotonic()
        wait_drained(url, config, pg_database, timeout_s=120)
        t_drained = time.monotonic()
        final = progress(pg_database)
        got = events_of(pg_database)
        store_enters = sum(1 for e in got if e[1] == ZONE_ID and e[2] == "enter")
        deadline = time.monotonic() + 60
        while len(decided(pg_database)) < store_enters and time.monotonic() < deadline:
            time.sleep(0.2)
        decisions = decided(pg_database)
    finally:
        for api in apis:
            api.stop()
        for w in workers:
            stop(w)
        stop(decider)
        drop_names(url, config)
        drop_stream(url, events_stream.name)
    print(f"{KILLS} kills at checkpoint sums {kills} (end {final}); {len(got)} events; "
          f"{time.monotonic() - t0:.1f} s (kills and posting done at {t_posted - t_replay:.1f} s, "
          f"ingested at {t_drained - t_replay:.1f} s)")
    assert len(kills) == KILLS
    assert kills[-1] < final  # every kill came before the replay's end
    assert Counter(got) == Counter(expected)  # 0 lost, 0 twice, none different
    assert len(decisions) == store_enters  # every ENTER at the store decided ...
    assert set(decisions.values()) == {1}  # ... exactly once
