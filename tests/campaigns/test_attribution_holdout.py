"""Holdout integration: a qualifying customer in the campaign's holdout gets a skipped "holdout" row
(no offer, no cap taken), which the stats then use as the control group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.export.stats_source import load_campaign_stats
from campaigns.handler import CampaignHandler
from campaigns.holdout import in_holdout
from campaigns.model import CampaignInvalid, parse_campaign
from geofence.events import TransitionKind, ZoneEvent
from geofence.service import clock
from geofence.service.tables.campaigns import CapReservation, Delivery
from tests.service.campaign_factories import add_campaign, add_customer, add_zone

MONDAY_1145 = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)  # 11:45 Paris


def lunch(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "lunch", "name": "Lunch", "status": "active", "priority": 1,
        "trigger": {"zone_tags": ["restaurant"], "kinds": ["enter"]}, "channel": "push",
        "templates": {"fr": {"title": "Bonjour {first_name}", "body": "-10% chez {store_name}"}},
        "windows": [{"days": "mon-fri", "start": "11:30", "end": "12:00"}],
    }  # fmt: skip
    data.update(overrides)
    return data


def enter(at: datetime, eid: str = "e1") -> ZoneEvent:
    return ZoneEvent(id=eid, zone_id="z1", device_id="dev1", kind=TransitionKind.ENTER, at=at, visit_id=eid,
                     reason="test", lat=48.857, lng=2.352)  # fmt: skip


def _run(engine: Engine, session: Session, *campaigns: dict[str, Any]) -> list[Delivery]:
    add_zone(session, MONDAY_1145)
    add_customer(session, MONDAY_1145)
    for definition in campaigns:
        add_campaign(session, MONDAY_1145, definition)
    with freeze_time(MONDAY_1145 + timedelta(seconds=1)):
        CampaignHandler(engine, now=clock.now)([enter(MONDAY_1145)])
    session.expire_all()
    return list(session.execute(select(Delivery).order_by(Delivery.campaign_id)).scalars())


def test_customer_in_holdout_is_recorded_as_skipped_holdout_without_taking_caps(engine, session):
    (row,) = _run(engine, session, lunch(holdout_share=1.0))
    assert (row.status, row.reason, row.customer_id) == ("skipped", "holdout", "cust1")
    assert session.execute(select(CapReservation)).scalars().all() == []
    stats = load_campaign_stats(session, "lunch", window=timedelta(hours=24), receipt_providers=frozenset())
    assert (stats.holdout, stats.eligible, stats.sent) == (1, 1, 0)


def test_holdout_also_holds_back_lower_priority_campaigns(engine, session):
    rows = _run(engine, session, lunch(id="vip", priority=5, holdout_share=1.0), lunch())
    assert {r.campaign_id: (r.status, r.reason) for r in rows} == {
        "vip": ("skipped", "holdout"), "lunch": ("skipped", "superseded:vip"),
    }  # fmt: skip


def test_no_holdout_share_means_the_offer_is_enqueued(engine, session):
    (row,) = _run(engine, session, lunch())
    assert row.status == "pending"
    assert not in_holdout("lunch", "cust1", 0.0)


@pytest.mark.parametrize("share", [-0.1, 1.5, "half"])
def test_holdout_share_must_be_a_fraction(share):
    with pytest.raises(CampaignInvalid, match="holdout_share"):
        parse_campaign(lunch(holdout_share=share))
