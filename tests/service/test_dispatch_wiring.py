"""Wiring: the campaign consumer of the zone-event log and the dispatch loop on a runtime, end to end."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.events import TransitionKind, ZoneEvent
from geofence.service.event_log import append
from geofence.service.jobs import build_scheduler
from geofence.service.runtime import Runtime, bootstrap
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import Delivery
from geofence.service.wiring.campaigns import decision_policy, dispatch_job
from tests.service.campaign_factories import RecordingProvider, add_campaign, add_customer, add_zone

MONDAY_1145 = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)


def runtime_for(engine: Engine, settings: Settings) -> Runtime:
    return bootstrap(settings, engine)


def test_consumer_and_dispatcher_are_worker_loops_woken_by_their_signals(
    engine: Engine, settings: Settings
) -> None:
    runtime = runtime_for(engine, settings)
    loops = {loop.id: loop for loop in runtime.loops}
    assert loops["dispatch"].role == loops["consumer:campaigns"].role == "worker"
    assert loops["dispatch"].fallback_s == settings.scheduler.dispatch_every_s
    assert loops["dispatch"].wakeup is runtime.wakeups.outbox
    assert loops["consumer:campaigns"].wakeup is runtime.wakeups.events
    assert build_scheduler(runtime, ("worker",)).get_job("dispatch") is None  # no interval job for it


def test_logged_event_to_provider(engine: Engine, session: Session, settings: Settings) -> None:
    runtime = runtime_for(engine, settings)  # before the zone: the factory's zone is not a zones.Zone
    add_zone(session, MONDAY_1145)
    add_customer(session, MONDAY_1145)
    add_campaign(session, MONDAY_1145, {
        "id": "lunch", "name": "Lunch", "status": "active", "trigger": {"zone_ids": ["z1"]},
        "templates": {"fr": {"body": "Bonjour {first_name}"}},
    })
    provider = RecordingProvider()
    runtime.providers = {"push": provider}
    loops = {loop.id: loop for loop in runtime.loops}
    event = ZoneEvent(id="e1", zone_id="z1", device_id="dev1", kind=TransitionKind.ENTER, at=MONDAY_1145,
                      visit_id="v1", reason="test")
    append(engine, [event], recorded_at=MONDAY_1145)
    with freeze_time(MONDAY_1145 + timedelta(seconds=1)):
        assert runtime.wakeups.outbox.wait(0) is False
        loops["consumer:campaigns"].work()
        assert runtime.wakeups.outbox.wait(0) is True  # the decision woke the dispatcher
        loops["consumer:campaigns"].work()  # nothing new: the cursor moved past the event
    with freeze_time(MONDAY_1145 + timedelta(seconds=3)):
        stats = dispatch_job(runtime)
    assert stats.by_status == {"sent": 1}
    assert [m.body for m in provider.sent] == ["Bonjour Ana"]
    session.expire_all()
    (row,) = session.execute(select(Delivery)).scalars().all()
    assert row.status == "sent"


def test_policy_comes_from_settings(tmp_path: Path) -> None:
    table = tmp_path / "legal.json"
    table.write_text(json.dumps({"sms": {"FR": {"hours": {"mon-sat": ["09:00-19:00"]}}}}))
    settings = Settings(env="local", campaigns={"max_offers_per_day": 1, "legal_hours_file": str(table)})
    policy = decision_policy(settings)
    assert (policy.global_caps.per_day, policy.global_caps.per_week) == (1, 5)
    assert policy.legal_table.rule("sms", "FR").closed_on_public_holidays is False
    table.write_text(json.dumps({"sms": {"FR": {"hours": {"noday": ["09:00-19:00"]}}}}))
    with pytest.raises(ValueError, match=r"legal.json: sms\.FR: unknown day"):
        decision_policy(settings)
