"""Frequency caps over a delivery history, reservation buckets, and per-sender throughput."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.limits import CapContext, GlobalCaps, PastDelivery, TokenBucket, cap_buckets, check_caps
from campaigns.model import CampaignCaps

AT = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # Wednesday 11:00 Paris


def ctx(**overrides: object) -> CapContext:
    values: dict[str, object] = {
        "campaign_id": "c1",
        "zone_id": "z1",
        "visit_id": "v-now",
        "caps": CampaignCaps(cooldown_s=6 * 3600, zone_cooldown_s=3600, one_per_visit=True),
        "global_caps": GlobalCaps(per_day=2, per_week=3),
        "tz": "Europe/Paris",
    }
    values.update(overrides)
    return CapContext(**values)  # type: ignore[arg-type]


def past(
    hours_ago: float, *, campaign: str = "other", zone: str = "z9", visit: str | None = None
) -> PastDelivery:
    return PastDelivery(campaign, zone, visit, "push", AT - timedelta(hours=hours_ago))


def test_no_history_passes() -> None:
    assert check_caps([], ctx(), AT) is None


@pytest.mark.parametrize(
    ("history", "reason"),
    [
        ([past(5, campaign="c1")], "cap:campaign_cooldown"),
        ([past(0.5, zone="z1")], "cap:zone_cooldown"),
        ([past(0.1, visit="v-now", zone="z9")], "cap:one_per_visit"),
        ([past(1), past(2)], "cap:customer_day"),
        ([past(30), past(50), past(1)], "cap:customer_week"),
        # Mon 23 and Tue 24 Nov (same ISO week) twice = 4 > 3 per week; today has none.
        ([past(26), past(27), past(50)], "cap:customer_week"),
    ],
)
def test_each_cap_level_blocks(history: list[PastDelivery], reason: str) -> None:
    assert check_caps(history, ctx(), AT) == reason


def test_cooldowns_expire() -> None:
    roomy = ctx(global_caps=GlobalCaps(per_day=5, per_week=5))
    assert check_caps([past(7, campaign="c1"), past(2, zone="z1")], roomy, AT) is None


def test_deferred_delivery_due_later_also_blocks_the_cooldown() -> None:
    later = PastDelivery("c1", "z2", None, "push", AT + timedelta(hours=1))
    assert check_caps([later], ctx(), AT) == "cap:campaign_cooldown"


def test_day_is_the_recipients_calendar_day() -> None:
    # 23:30 Paris yesterday is 22:30Z; at 00:30 Paris today (23:30Z) a new day has started there.
    at = datetime(2026, 11, 25, 23, 30, tzinfo=UTC)
    history = [PastDelivery("a", "z8", None, "push", at - timedelta(hours=h)) for h in (1.5, 2)]
    assert check_caps(history, ctx(), at) is None  # both yesterday in Paris
    assert check_caps(history, ctx(tz="UTC"), at) == "cap:customer_day"  # both today in UTC


def test_customers_own_cadence_is_tighter() -> None:
    assert check_caps([past(3)], ctx(customer_per_day=1), AT) == "cap:customer_cadence_day"
    assert check_caps([], ctx(customer_per_week=0), AT) == "cap:customer_cadence"
    assert check_caps([past(3)], ctx(customer_per_day=10), AT) is None  # never looser than the operator's


def test_buckets_cover_every_level() -> None:
    buckets = {b.key: b.limit for b in cap_buckets(ctx(customer_per_day=1), AT)}
    assert buckets["day:2026-11-25"] == 1
    assert buckets["week:2026-W48"] == 3
    assert buckets["visit:v-now"] == 1
    assert any(k.startswith("campaign:c1:") for k in buckets)
    assert any(k.startswith("zone:z1:") for k in buckets)
    no_visit = ctx(caps=CampaignCaps(cooldown_s=0, zone_cooldown_s=0, one_per_visit=False))
    assert [b.key for b in cap_buckets(no_visit, AT)] == ["day:2026-11-25", "week:2026-W48"]


def test_token_bucket_paces_a_sender() -> None:
    bucket = TokenBucket.full(rate_per_s=2.0, burst=2.0)
    waits = []
    for _ in range(4):
        bucket, wait = bucket.take(AT)
        waits.append(wait)
    assert waits[:2] == [timedelta(0), timedelta(0)]
    assert waits[2] == timedelta(seconds=0.5)
    bucket, wait = bucket.take(AT + timedelta(seconds=1))
    assert wait == timedelta(0)
