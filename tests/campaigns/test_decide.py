"""The pure send decision: consent, channel fallback, store windows vs recipient legal hours, caps."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from freezegun import freeze_time

from campaigns.decide import Defer, Recipient, Send, Skip, decide
from campaigns.limits import PastDelivery
from campaigns.model import Campaign, CampaignInvalid, ZoneInfo, parse_campaign
from geofence.events import TransitionKind, ZoneEvent
from geofence.service import clock

ZONE = ZoneInfo(
    id="z1",
    name="Café Lumière",
    tz="Europe/Paris",
    tags=frozenset({"restaurant"}),
    country="FR",
    lat=48.8566,
    lng=2.3522,
)
ALL_CONSENTS = {"location_offers": True, "push_marketing": True, "sms_marketing": True}


def campaign(**overrides: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": "lunch",
        "name": "Lunch offer",
        "status": "active",
        "trigger": {"zone_tags": ["restaurant"], "kinds": ["enter", "dwell"]},
        "channel": "push",
        "templates": {"fr": {"title": "Bonjour {first_name}", "body": "-10% chez {store_name}"}},
        "windows": [{"days": "mon-fri", "start": "11:30", "end": "12:00"}],
        "out_of_window": {"mode": "drop"},
    }
    data.update(overrides)
    return parse_campaign(data)


def recipient(**overrides: Any) -> Recipient:
    base = Recipient(
        customer_id="cust1",
        consents=dict(ALL_CONSENTS),
        locale="fr",
        tz="Europe/Paris",
        country="FR",
        phone_e164="+33612345678",
        push_token_live=True,
        first_name="Ana",
    )
    return replace(base, **overrides)


def event(at: datetime, kind: TransitionKind = TransitionKind.ENTER, visit: str = "v1") -> ZoneEvent:
    return ZoneEvent(
        id=f"e-{at.isoformat()}",
        zone_id="z1",
        device_id="d1",
        kind=kind,
        at=at,
        visit_id=visit,
        reason="test",
    )


def decide_now(
    c: Campaign, r: Recipient | None = None, history: list[PastDelivery] | None = None, zone: ZoneInfo = ZONE
) -> Send | Defer | Skip:
    """Adapter-style call: the instant comes from the (frozen) clock."""
    at = clock.now()
    return decide(event(at), c, zone, r or recipient(), history or [], at)


def test_sends_inside_the_store_window() -> None:
    with freeze_time("2026-11-23 10:45:00+00:00"):  # Monday 11:45 Paris
        result = decide_now(campaign())
    assert isinstance(result, Send)
    assert (result.channel, result.reason) == ("push", "ok")
    assert result.expires_at == result.at + timedelta(hours=3)


@pytest.mark.parametrize(
    ("frozen", "outcome"),
    [
        # Friday 27 March 2026, CET: 11:45 local = 10:45Z in window; 09:45Z is 10:45 local: not yet.
        ("2026-03-27 10:45:00+00:00", "send"),
        ("2026-03-27 09:45:00+00:00", "skip"),
        # Monday 30 March 2026, CEST: 11:45 local = 09:45Z; 10:45Z is 12:45 local.
        ("2026-03-30 09:45:00+00:00", "send"),
        ("2026-03-30 10:45:00+00:00", "skip"),
        # Monday 26 October 2026, CET again.
        ("2026-10-26 10:45:00+00:00", "send"),
        ("2026-10-26 09:45:00+00:00", "skip"),
    ],
)
def test_store_window_follows_paris_across_both_dst_changes(frozen: str, outcome: str) -> None:
    with freeze_time(frozen):
        assert decide_now(campaign()).outcome == outcome


def test_drop_policy_never_defers() -> None:
    with freeze_time("2026-11-23 19:10:00+00:00"):  # 20:10 Paris, after-work window closed
        result = decide_now(campaign())
    assert isinstance(result, Skip)
    assert result.reason == "out_of_window:dropped:campaign_window"


def test_defer_to_next_opening_within_max_delay() -> None:
    c = campaign(out_of_window={"mode": "defer", "max_delay_s": 3 * 3600})
    with freeze_time("2026-11-23 09:00:00+00:00"):  # 10:00 Paris, opens 11:30
        result = decide_now(c)
    assert isinstance(result, Defer)
    assert result.until == datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
    assert result.reason == "deferred:campaign_window"
    with freeze_time("2026-11-23 06:00:00+00:00"):  # 07:00 Paris: opening is 4h30 away
        assert decide_now(c) == Skip("out_of_window:beyond_max_delay:campaign_window+quiet_hours", "push")


def test_never_sent_at_three_in_the_morning() -> None:
    # A 24/7 campaign that defers: the push quiet period (21:00-08:00) moves it to 08:00.
    c = campaign(windows=[], out_of_window={"mode": "defer", "max_delay_s": 12 * 3600})
    with freeze_time("2026-03-29 01:00:00+00:00"):  # 03:00 CEST, the night clocks go forward
        result = decide_now(c)
    assert isinstance(result, Defer)
    assert result.until == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)  # 08:00 CEST
    assert result.reason == "deferred:quiet_hours"


def test_after_work_window_across_midnight_in_store_time() -> None:
    c = campaign(
        windows=[{"days": "fri", "start": "21:30", "end": "01:00"}],
        channel="push",
        push_quiet_hours={"start": "22:30", "end": "07:00"},  # narrowed from 21:00-08:00
    )
    with freeze_time("2026-11-27 20:45:00+00:00"):  # Friday 21:45 Paris: window open, not yet quiet
        assert isinstance(decide_now(c), Send)
    with freeze_time("2026-11-27 23:30:00+00:00"):  # Saturday 00:30, still Friday's window: quiet
        assert decide_now(c) == Skip("out_of_window:dropped:quiet_hours", "push")
    with freeze_time("2026-11-28 20:45:00+00:00"):  # Saturday 21:45: Saturday has no window
        assert decide_now(c) == Skip("out_of_window:dropped:campaign_window", "push")


@pytest.mark.parametrize(
    "quiet",
    [
        {"start": "01:00", "end": "07:00"},
        {"start": "22:00", "end": "05:00"},
        {"start": "08:00", "end": "21:00"},
    ],
)
def test_a_campaign_cannot_open_the_small_hours(quiet: dict[str, str]) -> None:
    with pytest.raises(CampaignInvalid, match="00:00-06:00"):
        campaign(push_quiet_hours=quiet)


def test_store_and_recipient_in_different_zones() -> None:
    # The store in Paris is open 17:30-18:00 local; an SMS recipient living in New York (08:00-21:00)
    # is reachable then (11:30 NY) but a recipient in Honolulu is not (06:30 there).
    c = campaign(
        channel="sms",
        windows=[{"days": "mon-sun", "start": "17:30", "end": "18:00"}],
        trigger={"zone_ids": ["z1"]},
        advertiser="Lumière",
        sender="36111",
    )
    with freeze_time("2026-11-23 16:40:00+00:00"):
        ny = decide_now(c, recipient(tz="America/New_York", country="US", phone_e164="+12125550100"))
        hawaii = decide_now(c, recipient(tz="Pacific/Honolulu", country="US", phone_e164="+18085550100"))
    assert isinstance(ny, Send)
    assert hawaii == Skip("out_of_window:dropped:legal_hours", "sms")


def test_french_sms_not_on_sunday_even_inside_store_window() -> None:
    c = campaign(channel="sms", windows=[], out_of_window={"mode": "defer", "max_delay_s": 2 * 86400})
    with freeze_time("2026-11-29 10:00:00+00:00"):  # Sunday 11:00 Paris
        result = decide_now(c)
    assert isinstance(result, Defer)
    assert result.until == datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # Monday 08:30 Paris


def test_sms_deferred_over_alsace_good_friday() -> None:
    c = campaign(channel="sms", windows=[], out_of_window={"mode": "defer", "max_delay_s": 3 * 86400})
    with freeze_time("2026-04-03 09:00:00+00:00"):  # Good Friday 11:00
        moselle = decide_now(c, recipient(subdivision="57"))
        paris = decide_now(c, recipient(subdivision="75"))
    assert isinstance(paris, Send)
    assert isinstance(moselle, Defer)
    assert moselle.until == datetime(2026, 4, 4, 8, 0, tzinfo=UTC)  # Saturday 10:00


def test_a_store_in_moselle_sends_no_sms_on_good_friday_even_to_a_recipient_in_paris() -> None:
    c = campaign(channel="sms", windows=[], out_of_window={"mode": "defer", "max_delay_s": 3 * 86400})
    metz = ZONE.model_copy(update={"id": "metz", "subdivision": "57", "lat": 49.1193, "lng": 6.1757})
    with freeze_time("2026-04-03 09:00:00+00:00"):  # Good Friday 11:00
        from_metz = decide_now(c, recipient(subdivision=None), zone=metz)
        from_paris = decide_now(c, recipient(subdivision=None))
    assert isinstance(from_paris, Send)  # neither the store's place nor the recipient's has the holiday
    assert isinstance(from_metz, Defer)  # the store's place does
    assert from_metz.until == datetime(2026, 4, 4, 8, 0, tzinfo=UTC)  # Saturday 10:00
    with freeze_time("2026-12-26 10:00:00+00:00"):  # St Stephen's Day, a Saturday, 11:00
        strasbourg = metz.model_copy(update={"subdivision": "67"})
        assert isinstance(decide_now(c, recipient(subdivision=None), zone=strasbourg), Defer)


@pytest.mark.parametrize(
    ("consents", "reason"),
    [
        ({"push_marketing": True, "sms_marketing": True}, "no_consent:location_offers"),
        ({"location_offers": True}, "no_consent:push_marketing"),
        ({"location_offers": False, "push_marketing": True}, "no_consent:location_offers"),
    ],
)
def test_nothing_without_consent_for_purpose_and_channel(consents: dict[str, bool], reason: str) -> None:
    with freeze_time("2026-11-23 10:45:00+00:00"):
        assert decide_now(campaign(), recipient(consents=consents)) == Skip(reason)


def test_push_then_sms_falls_back_when_no_live_token() -> None:
    c = campaign(channel="push_then_sms")
    with freeze_time("2026-11-23 10:45:00+00:00"):
        fallback = decide_now(c, recipient(push_token_live=False))
        no_push_consent = decide_now(c, recipient(consents={**ALL_CONSENTS, "push_marketing": False}))
        suppressed = decide_now(c, recipient(push_token_live=False, phone_suppressed=True))
        no_sms = decide_now(
            c, recipient(push_token_live=False, consents={**ALL_CONSENTS, "sms_marketing": False})
        )
    assert isinstance(fallback, Send) and fallback.channel == "sms"
    assert fallback.reason == "fallback:no_push_token"
    assert isinstance(no_push_consent, Send) and no_push_consent.channel == "sms"
    assert suppressed == Skip("no_push_token+suppressed")
    assert no_sms == Skip("no_push_token+no_consent:sms_marketing")


def test_audience_filter() -> None:
    c = campaign(
        audience={
            "all": [
                {"attribute": "loyalty", "op": "in", "value": ["gold", "silver"]},
                {"attribute": "age", "op": "gte", "value": 18},
            ]
        }
    )
    with freeze_time("2026-11-23 10:45:00+00:00"):
        gold = decide_now(c, recipient(attributes={"loyalty": "gold", "age": 30}))
        bronze = decide_now(c, recipient(attributes={"loyalty": "bronze", "age": 30}))
        weird = decide_now(c, recipient(attributes={"loyalty": "gold", "age": "thirty"}))
    assert isinstance(gold, Send)
    assert bronze == Skip("audience:loyalty")
    assert weird == Skip("audience:age")


def test_trigger_dates_and_status() -> None:
    with freeze_time("2026-11-23 10:45:00+00:00"):
        assert decide_now(campaign(status="paused")) == Skip("campaign_not_live")
        assert decide_now(campaign(starts_at="2026-12-01T00:00:00Z")) == Skip("campaign_not_live")
        assert decide_now(campaign(ends_at="2026-11-23T10:00:00Z")) == Skip("campaign_not_live")
        assert decide_now(campaign(trigger={"zone_ids": ["z2"]})) == Skip("trigger_mismatch")
        assert decide_now(campaign(trigger={"zone_tags": ["restaurant"], "kinds": ["exit"]})) == Skip(
            "trigger_mismatch"
        )
        assert decide_now(campaign(), r=None) != Skip("unknown_customer")  # default recipient is used


def test_unknown_customer_and_old_event_are_skipped() -> None:
    at = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)
    assert decide(event(at), campaign(), ZONE, None, [], at) == Skip("unknown_customer")
    assert decide(event(at - timedelta(hours=2)), campaign(), ZONE, recipient(), [], at) == Skip(
        "event_too_old"
    )


def test_caps_are_checked_at_the_deferred_send_time_and_buckets_returned() -> None:
    c = campaign(out_of_window={"mode": "defer", "max_delay_s": 3 * 3600})
    at = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    history = [PastDelivery("lunch", "z7", None, "push", at - timedelta(hours=20))]  # yesterday
    result = decide(event(at), c, ZONE, recipient(), history, at)
    assert result.outcome == "skip" and result.reason == "cap:campaign_cooldown"  # 24 h cooldown
    result = decide(event(at), c, ZONE, recipient(), [], at)
    assert isinstance(result, Defer)
    keys = [b.key for b in result.buckets]
    assert "day:2026-11-23" in keys and "visit:v1" in keys
