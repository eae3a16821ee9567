"""Wiring: the zone-event subscriber and the dispatch job on a runtime, end to end through the bus."""

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
from geofence.service.jobs import build_scheduler
from geofence.service.runtime import Runtime, bootstrap
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import Delivery
from geofence.service.wiring.campaigns import decision_policy, dispatch_job
from tests.service.campaign_factories import RecordingProvider, add_campaign, add_customer, add_zone

MONDAY_1145 = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)


def runtime_for(engine: Engine, settings: Settings) -> Runtime:
    return bootstrap(settings, engine)


def test_job_is_registered_for_the_worker(engine: Engine, settings: Settings) -> None:
    runtime = runtime_for(engine, settings)
    (job,) = [j for j in runtime.jobs if j.id == "dispatch"]
    assert (job.role, job.every_s) == ("worker", settings.scheduler.dispatch_every_s)
    scheduler = build_scheduler(runtime, ("worker",))
    assert scheduler.get_job("dispatch") is not None
    assert build_scheduler(runtime, ("api",)).get_job("dispatch") is None


def test_bus_event_to_provider(engine: Engine, session: Session, settings: Settings) -> None:
    runtime = runtime_for(engine, settings)  # before the zone: the factory's zone is not a zones.Zone
    add_zone(session, MONDAY_1145)
    add_customer(session, MONDAY_1145)
    add_campaign(session, MONDAY_1145, {
        "id": "lunch", "name": "Lunch", "status": "active", "trigger": {"zone_ids": ["z1"]},
        "templates": {"fr": {"body": "Bonjour {first_name}"}},
    })
    provider = RecordingProvider()
    runtime.providers = {"push": provider}
    event = ZoneEvent(id="e1", zone_id="z1", device_id="dev1", kind=TransitionKind.ENTER, at=MONDAY_1145,
                      visit_id="v1", reason="test")
    with freeze_time(MONDAY_1145 + timedelta(seconds=1)):
        runtime.bus.publish([event])
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
