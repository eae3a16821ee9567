"""Outbound webhooks: Standard Webhooks signatures (checked by the reference library in a loopback
receiver), endpoints and their filters, target refusal, durable ordered deliveries with backoff,
Retry-After, 410, parking after three days, replay and the delivery log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.app import create_app
from geofence.service.event_log import Consumer, ConsumerRunner, append
from geofence.service.settings import Settings, WebhookSettings
from geofence.service.tables.webhooks import WebhookDeliveryRow
from geofence.service.webhook_retention import purge_webhook_deliveries
from geofence.service.webhook_signing import new_secret, signed_headers
from geofence.service.webhook_targets import PinnedTarget, resolve_target, target_refusal
from geofence.service.webhooks import (
    MAX_AGE,
    WebhookEnqueuer,
    WebhookSender,
    backoff,
)
from tests.service.webhook_receiver import Receiver, running_receiver

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
KINDS = [TransitionKind.ENTER, TransitionKind.DWELL, TransitionKind.EXIT]


def now() -> datetime:
    return datetime.now(UTC)


def zone_events(prefix: str, n: int, *, at: datetime = T0, devices: int = 2) -> list[ZoneEvent]:
    return [
        ZoneEvent(
            id=f"{prefix}{i}",
            zone_id="store-1",
            device_id=f"dev-{i % devices}",
            kind=KINDS[i % 3],
            at=at + timedelta(seconds=i),
            visit_id=f"v{i}",
            reason="test",
        )
        for i in range(n)
    ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with running_receiver() as r:
        yield r


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhooks": WebhookSettings(allow_private_targets=True)})


@pytest.fixture
def client(hook_settings: Settings, sqlite_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings, engine=sqlite_engine)) as c:
        yield c


def register(client: TestClient, receiver: Receiver, types: list[str]) -> str:
    answer = client.post("/v1/admin/webhooks", json={"url": receiver.url, "event_types": types})
    assert answer.status_code == 201, answer.text
    receiver.secret = answer.json()["secret"]
    return str(answer.json()["id"])


def pump(engine: Engine, sender: WebhookSender) -> None:
    """The consumer's pass over the log (enqueue), then the sender's."""
    ConsumerRunner(
        engine, Consumer("webhooks", WebhookEnqueuer(engine, now=now).handle), now=now, failure_check_s=0
    ).run_once()
    while sender.run_once():
        pass


def sender_for(engine: Engine) -> WebhookSender:
    return WebhookSender(engine, now=now, allow_private=True, threads=2, rng=lambda: 0.5, timeout_s=5)


def log_order(engine: Engine, endpoint_id: str) -> list[str]:
    with Session(engine) as s:
        return list(
            s.execute(
                select(WebhookDeliveryRow.event_id)
                .where(WebhookDeliveryRow.endpoint_id == endpoint_id)
                .order_by(WebhookDeliveryRow.seq)
            ).scalars()
        )


def test_signatures_verify_with_the_reference_library_and_either_secret_during_a_rotation() -> None:
    old, new, stranger = new_secret(), new_secret(), new_secret()
    assert old.startswith("whsec_") and old != new
    body = b'{"type":"zone.entered"}'
    headers = signed_headers([new, old], "msg_1", now(), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"type": "zone.entered"}
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/x",
        "http://10.1.2.3/x",
        "http://192.168.0.1/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest/meta-data",
        "http://localhost:9000/",
        "ftp://crm.example.com/",
        "not a url",
    ],
)
def test_private_loopback_and_non_http_targets_are_refused(
    url: str, settings: Settings, sqlite_engine: Engine
) -> None:
    assert target_refusal(url, allow_private=False) is not None
    with TestClient(create_app(settings, engine=sqlite_engine)) as c:
        answer = c.post("/v1/admin/webhooks", json={"url": url, "event_types": ["zone.entered"]})
    assert answer.status_code == 422
    assert "refused" in answer.text


def test_a_public_target_is_accepted_and_a_name_resolving_inside_is_refused_at_send_time() -> None:
    assert target_refusal("https://8.8.8.8/hooks", allow_private=False) is None
    assert target_refusal("https://crm.example.com/hooks", allow_private=False) is None
    assert target_refusal("https://203.0.113.9/hooks", allow_private=False) is not None  # documentation range
    # a name passes registration; what it resolves to is checked before each attempt
    assert target_refusal("http://localhost./x", allow_private=False) is None
    assert resolve_target("http://localhost./x", allow_private=False)[1] is not None
    loopback = "http://127.0.0.1/x"
    assert resolve_target(loopback, allow_private=True) == (PinnedTarget(loopback), None)


def test_an_unknown_event_type_is_a_422(client: TestClient) -> None:
    answer = client.post(
        "/v1/admin/webhooks", json={"url": "https://crm.example.com/h", "event_types": ["zone.x"]}
    )
    assert answer.status_code == 422


def test_every_wanted_zone_event_arrives_signed_in_order_without_contact_data(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.entered", "zone.exited"])
    events = zone_events("e", 6)
    append(sqlite_engine, events, recorded_at=T0)
    pump(sqlite_engine, sender_for(sqlite_engine))
    wanted = [e.id for e in events if e.kind is not TransitionKind.DWELL]
    assert receiver.event_ids() == wanted and receiver.bad_signatures == 0
    first = receiver.accepted[0].body
    assert first["type"] == "zone.entered"
    assert set(first["data"]) == {"event_id", "zone_id", "device_id", "visit_id", "reason"}  # no phone, token
    log = client.get(f"/v1/admin/webhooks/{endpoint}/deliveries").json()["items"]
    assert [d["event_id"] for d in log] == wanted[::-1]
    assert {d["status"] for d in log} == {"delivered"} and {d["attempts"] for d in log} == {1}
    assert {d["id"] for d in log} == {r.webhook_id for r in receiver.accepted}


def test_the_log_consumer_enqueues_each_event_once_per_endpoint(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    register(client, receiver, ["zone.*"])
    register(client, receiver, ["zone.entered"])
    (event,) = zone_events("once", 1)
    append(sqlite_engine, [event], recorded_at=T0)
    enqueue = WebhookEnqueuer(sqlite_engine, now=now)
    enqueue.handle(event)
    enqueue.handle(event)  # handed again after a crash
    with Session(sqlite_engine) as s:
        assert len(s.execute(select(WebhookDeliveryRow)).all()) == 2


def test_a_receiver_down_for_an_hour_gets_everything_afterwards_in_order_with_the_same_ids(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.*"])
    sender = sender_for(sqlite_engine)
    receiver.status = 503
    with freeze_time(T0) as clock:
        for minute in range(60):  # events keep coming during the outage
            if minute % 10 == 0:
                append(sqlite_engine, zone_events(f"m{minute}-", 3, at=now()), recorded_at=now())
            pump(sqlite_engine, sender)
            clock.tick(timedelta(minutes=1))
        assert receiver.accepted == [] and len(receiver.attempts) >= 3  # tried, backing off
        receiver.status = 200
        for _ in range(6 * 24):  # the head's next attempt is within hours (the schedule)
            pump(sqlite_engine, sender)
            clock.tick(timedelta(minutes=10))
    assert receiver.event_ids() == log_order(sqlite_engine, endpoint)
    assert len(receiver.accepted) == 18 and receiver.bad_signatures == 0
    ids_per_event: dict[str, set[str]] = {}
    for r in receiver.attempts:
        ids_per_event.setdefault(r.body["data"]["event_id"], set()).add(r.webhook_id)
    assert all(len(ids) == 1 for ids in ids_per_event.values())  # a retry repeats its webhook-id


def test_retry_after_is_honoured(client: TestClient, receiver: Receiver, sqlite_engine: Engine) -> None:
    endpoint = register(client, receiver, ["zone.*"])
    receiver.status, receiver.retry_after = 429, "120"
    with freeze_time(T0):
        append(sqlite_engine, zone_events("r", 1), recorded_at=T0)
        pump(sqlite_engine, sender_for(sqlite_engine))
    (d,) = client.get(f"/v1/admin/webhooks/{endpoint}/deliveries").json()["items"]
    assert d["status"] == "pending" and d["last_status"] == 429
    assert datetime.fromisoformat(d["next_attempt_at"]) == T0 + timedelta(seconds=120)


def test_410_disables_the_endpoint_until_an_operator_enables_it(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.*"])
    sender = sender_for(sqlite_engine)
    receiver.status = 410
    append(sqlite_engine, zone_events("g", 2), recorded_at=T0)
    pump(sqlite_engine, sender)
    state = client.get(f"/v1/admin/webhooks/{endpoint}").json()
    assert state["disabled_at"] is not None and "410" in state["disabled_reason"]
    assert len(receiver.attempts) == 1  # nothing more once gone
    receiver.status = 200
    pump(sqlite_engine, sender)
    assert receiver.accepted == []
    assert client.post(f"/v1/admin/webhooks/{endpoint}/enable").json()["disabled_at"] is None
    pump(sqlite_engine, sender)
    assert receiver.event_ids() == ["g0", "g1"]


def test_a_delivery_failing_for_three_days_is_parked_visible_and_the_next_one_goes(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.*"])
    sender = sender_for(sqlite_engine)
    receiver.fail_events = {"p0"}
    with freeze_time(T0) as clock:
        append(sqlite_engine, zone_events("p", 2), recorded_at=T0)
        for _ in range(int(MAX_AGE / timedelta(hours=1))):
            pump(sqlite_engine, sender)
            clock.tick(timedelta(hours=1))
        assert receiver.accepted == []  # p1 waits behind p0 (order per endpoint)
        for _ in range(12):
            pump(sqlite_engine, sender)
            clock.tick(timedelta(hours=1))
    assert receiver.event_ids() == ["p1"]
    (parked,) = client.get(f"/v1/admin/webhooks/{endpoint}/deliveries", params={"status": "parked"}).json()[
        "items"
    ]
    assert parked["event_id"] == "p0" and parked["last_error"] == "HTTP 500" and parked["attempts"] >= 10


def test_replay_from_a_point_in_time_sends_again_in_order_with_the_same_ids(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.entered", "zone.dwelled", "zone.exited"])
    sender = sender_for(sqlite_engine)
    append(sqlite_engine, zone_events("x", 4), recorded_at=T0)
    pump(sqlite_engine, sender)
    first = {r.body["data"]["event_id"]: r.webhook_id for r in receiver.accepted}
    answer = client.post(
        f"/v1/admin/webhooks/{endpoint}/replay", json={"since": (T0 + timedelta(seconds=2)).isoformat()}
    )
    assert answer.status_code == 202 and answer.json() == {"due": 2}
    pump(sqlite_engine, sender)
    again = receiver.accepted[4:]
    assert [r.body["data"]["event_id"] for r in again] == ["x2", "x3"]
    assert [r.webhook_id for r in again] == [first["x2"], first["x3"]]


def test_the_retention_purges_what_the_sender_settled_never_what_waits_and_a_replay_sends_anew(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.*"])
    sender = sender_for(sqlite_engine)
    receiver.fail_events = {"r0", "w0"}
    with freeze_time(T0) as clock:
        append(sqlite_engine, zone_events("r", 2), recorded_at=T0)
        for _ in range(int(MAX_AGE / timedelta(hours=6)) + 4):  # r0 parked after 3 days, then r1 delivered
            pump(sqlite_engine, sender)
            clock.tick(timedelta(hours=6))
        first_r1 = receiver.accepted[0].webhook_id
        clock.move_to(T0 + timedelta(days=40))
        append(sqlite_engine, zone_events("w", 1, at=T0 + timedelta(days=40)), recorded_at=now())
        pump(sqlite_engine, sender)  # w0 fails: pending, waiting for its next attempt
        with Session(sqlite_engine) as s:
            assert purge_webhook_deliveries(s, before=now() - timedelta(days=30)) == 2
    assert client_statuses(client, endpoint) == [("w0", "pending")]  # the delivery log: r0, r1 gone
    receiver.fail_events = set()
    answer = client.post(f"/v1/admin/webhooks/{endpoint}/replay", json={"since": T0.isoformat()})
    assert answer.status_code == 202 and answer.json() == {"due": 3}  # w0 again, r0 and r1 anew
    pump(sqlite_engine, sender)
    assert receiver.event_ids() == ["r1", "r0", "r1", "w0"]
    assert receiver.accepted[2].webhook_id != first_r1  # its message was purged: a new id


def client_statuses(client: TestClient, endpoint: str) -> list[tuple[str, str]]:
    items = client.get(f"/v1/admin/webhooks/{endpoint}/deliveries").json()["items"]
    return [(d["event_id"], d["status"]) for d in items]


def test_backoff_spreads_about_three_days_with_jitter() -> None:
    assert backoff(1, lambda: 0.0) == timedelta(seconds=4) and backoff(1, lambda: 1.0) == timedelta(seconds=6)
    total, attempts = timedelta(0), 0
    while total < MAX_AGE:
        attempts += 1
        total += backoff(attempts, lambda: 0.5)
    assert 10 <= attempts <= 16


def test_rotating_the_secret_signs_with_both_until_the_overlap_ends(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    endpoint = register(client, receiver, ["zone.*"])
    old = receiver.secret
    new = client.post(f"/v1/admin/webhooks/{endpoint}/rotate-secret").json()["secret"]
    append(sqlite_engine, zone_events("k", 1), recorded_at=T0)
    receiver.secret = old  # a receiver not yet rotated still verifies
    pump(sqlite_engine, sender_for(sqlite_engine))
    assert receiver.event_ids() == ["k0"]
    assert Webhook(new) is not None


def test_the_worker_loops_deliver_a_fix_s_zone_event_within_seconds(
    engine: Engine, hook_settings: Settings, receiver: Receiver
) -> None:
    """The wiring: a committed event wakes the webhook consumer (its own follower of the events signal,
    beside the campaign consumer), whose pass wakes the sender. SQLite and PostgreSQL."""
    import time

    from geofence.service.loops import start_loops
    from geofence.service.runtime import bootstrap
    from tests.geofence.tracks import STORE, fix
    from zones.model import Circle, Zone

    runtime = bootstrap(hook_settings, engine)
    with TestClient(create_app(runtime=runtime, run_jobs=False)) as c:
        register(c, receiver, ["zone.entered"])
    service = runtime.geofence
    service.location_consent = None
    service.save_zones([Zone("store", "Store", Circle(STORE[0], STORE[1], 60))], at=T0)
    loops = start_loops(runtime.loops, ("worker",), engine=engine, wakeups=runtime.wakeups)
    try:
        time.sleep(0.2)  # the loops' first passes: nothing yet
        inside = fix(0, 0, 60)
        (event,) = service.ingest([inside], at=inside.recorded_at).events
        deadline = time.monotonic() + 10
        while not receiver.accepted and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        loops.stop()
    assert receiver.event_ids() == [event.id] and receiver.bad_signatures == 0
    assert receiver.accepted[0].body["data"]["zone_id"] == "store"


def test_the_cli_registers_lists_and_replays_an_endpoint(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from geofence.service.cli import app
    from geofence.service.db import make_engine
    from geofence.service.settings import get_settings

    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("GEOFENCE_DATABASE_URL", url)
    monkeypatch.setenv("GEOFENCE_SCHEDULER__ENABLED", "false")
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        refused = runner.invoke(app, ["webhooks", "add", "http://127.0.0.1:9/x", "-e", "zone.entered"])
        assert refused.exit_code != 0 and "refused" in refused.output
        bad = runner.invoke(app, ["webhooks", "add", "https://crm.example.com/h", "-e", "zone.nope"])
        assert bad.exit_code != 0 and "unknown event types" in bad.output
        added = runner.invoke(app, ["webhooks", "add", "https://crm.example.com/h", "-e", "zone.*"])
        assert added.exit_code == 0, added.output
        secret = added.output.strip().splitlines()[-1]
        assert secret.startswith("whsec_") and Webhook(secret) is not None
        listed = runner.invoke(app, ["webhooks", "list"])
        assert "https://crm.example.com/h" in listed.output and secret not in listed.output
        endpoint_id = listed.output.splitlines()[1].split("\t")[0]
        append(make_engine(url), zone_events("c", 2), recorded_at=T0)
        replayed = runner.invoke(app, ["webhooks", "replay", endpoint_id, "--since", "2026-12-06T12:00:01"])
        assert replayed.exit_code == 0, replayed.output
        assert "1 deliveries due" in replayed.output
    finally:
        get_settings.cache_clear()


def test_erasing_a_customer_removes_the_webhook_messages_that_name_their_device(
    client: TestClient, receiver: Receiver, sqlite_engine: Engine
) -> None:
    from geofence.service.location_data import SqlLocationData

    register(client, receiver, ["zone.*"])
    append(sqlite_engine, zone_events("z", 4), recorded_at=T0)  # dev-0: z0, z2; dev-1: z1, z3
    pump(sqlite_engine, sender_for(sqlite_engine))
    with Session(sqlite_engine) as s:
        counts = SqlLocationData().erase(s, "cust-gone", ["dev-0"])
        s.commit()
        left = sorted(s.execute(select(WebhookDeliveryRow.event_id)).scalars())
    assert counts["webhook_deliveries"] == 2 and left == ["z1", "z3"]
