"""Frequency caps and throughput, pure: over a customer's delivery history and an instant.

Levels (all must pass): the customer across all campaigns per calendar day and per ISO week in the
recipient's zone (the tighter of the operator's caps and the customer's own cadence), the same
campaign to the same customer (cooldown), any campaign in the same zone (zone cooldown), one offer
per visit. ``check_caps`` reads the history; ``cap_buckets`` names the reservation slots that the
service inserts in the same transaction as the delivery, under a UNIQUE constraint, so that two
concurrent events cannot both take the last slot (the history check alone could be raced).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from campaigns.model import CampaignCaps
from campaigns.windows import zone


@dataclass(frozen=True, slots=True)
class PastDelivery:
    """A delivery that counts against caps (waiting, sending or sent; not skipped/cancelled/failed).

    ``at`` is when it was (or is due to be) sent.
    """

    campaign_id: str | None
    zone_id: str | None
    visit_id: str | None
    channel: str
    at: datetime


@dataclass(frozen=True, slots=True)
class GlobalCaps:
    """Marketing pressure across every campaign, per customer (the operator's defaults)."""

    per_day: int = 2
    per_week: int = 5


@dataclass(frozen=True, slots=True)
class CapBucket:
    """A reservation bucket: at most ``limit`` rows per (customer, key)."""

    key: str
    limit: int


@dataclass(frozen=True, slots=True)
class CapContext:
    campaign_id: str
    zone_id: str
    visit_id: str | None
    caps: CampaignCaps
    global_caps: GlobalCaps
    tz: str  # the recipient's zone: calendar days and weeks are theirs
    customer_per_day: int | None = None
    customer_per_week: int | None = None

    def day_limit(self) -> int:
        own = self.customer_per_day
        return self.global_caps.per_day if own is None else min(own, self.global_caps.per_day)

    def week_limit(self) -> int:
        own = self.customer_per_week
        return self.global_caps.per_week if own is None else min(own, self.global_caps.per_week)


def _day_key(at: datetime, tz: str) -> str:
    return at.astimezone(zone(tz)).date().isoformat()


def _week_key(at: datetime, tz: str) -> str:
    year, week, _ = at.astimezone(zone(tz)).isocalendar()
    return f"{year}-W{week:02d}"


def check_caps(history: Sequence[PastDelivery], ctx: CapContext, at: datetime) -> str | None:
    """The first cap a send at ``at`` would break (a reason such as ``cap:customer_day``), or None.

    Cooldowns are rolling and symmetric (a deferred delivery due later also blocks an earlier one);
    day/week caps count calendar days/ISO weeks in the recipient's zone, like Braze.
    """
    day_limit, week_limit = ctx.day_limit(), ctx.week_limit()
    if day_limit <= 0 or week_limit <= 0:
        return "cap:customer_cadence"
    caps = ctx.caps
    day, week = _day_key(at, ctx.tz), _week_key(at, ctx.tz)
    same_day = same_week = 0
    for past in history:
        gap = abs(at - past.at)
        if caps.one_per_visit and ctx.visit_id and past.visit_id == ctx.visit_id:
            return "cap:one_per_visit"
        if past.campaign_id == ctx.campaign_id and gap < timedelta(seconds=caps.cooldown_s):
            return "cap:campaign_cooldown"
        if past.zone_id == ctx.zone_id and gap < timedelta(seconds=caps.zone_cooldown_s):
            return "cap:zone_cooldown"
        if _week_key(past.at, ctx.tz) == week:
            same_week += 1
            if _day_key(past.at, ctx.tz) == day:
                same_day += 1
    if same_day >= day_limit:
        own = ctx.customer_per_day is not None and ctx.customer_per_day < ctx.global_caps.per_day
        return "cap:customer_cadence_day" if own else "cap:customer_day"
    if same_week >= week_limit:
        own = ctx.customer_per_week is not None and ctx.customer_per_week < ctx.global_caps.per_week
        return "cap:customer_cadence_week" if own else "cap:customer_week"
    return None


def cap_buckets(ctx: CapContext, at: datetime) -> list[CapBucket]:
    """Reservation buckets for a send at ``at`` (the service takes one free slot in each, atomically).

    Cooldown buckets are time slices of the cooldown length: they stop two simultaneous triggers; the
    rolling check in ``check_caps`` handles the rest.
    """
    epoch_s = int(at.timestamp())
    caps = ctx.caps
    buckets = [
        CapBucket(f"day:{_day_key(at, ctx.tz)}", ctx.day_limit()),
        CapBucket(f"week:{_week_key(at, ctx.tz)}", ctx.week_limit()),
    ]
    if caps.one_per_visit and ctx.visit_id:
        buckets.append(CapBucket(f"visit:{ctx.visit_id}", 1))
    if caps.cooldown_s:
        buckets.append(CapBucket(f"campaign:{ctx.campaign_id}:{epoch_s // caps.cooldown_s}", 1))
    if caps.zone_cooldown_s:
        buckets.append(CapBucket(f"zone:{ctx.zone_id}:{epoch_s // caps.zone_cooldown_s}", 1))
    return buckets


@dataclass(frozen=True, slots=True)
class TokenBucket:
    """Channel throughput per sender: ``rate_per_s`` messages per second, bursts up to ``burst``.

    Pure: ``take`` returns the new bucket and how long the caller must wait before this message.
    """

    rate_per_s: float
    burst: float
    tokens: float
    updated_at: datetime | None = None

    @classmethod
    def full(cls, rate_per_s: float, burst: float | None = None) -> TokenBucket:
        size = burst if burst is not None else max(1.0, rate_per_s)
        return cls(rate_per_s=rate_per_s, burst=size, tokens=size)

    def take(self, at: datetime) -> tuple[TokenBucket, timedelta]:
        elapsed = 0.0 if self.updated_at is None else max(0.0, (at - self.updated_at).total_seconds())
        tokens = min(self.burst, self.tokens + elapsed * self.rate_per_s)
        if tokens >= 1.0:
            return TokenBucket(self.rate_per_s, self.burst, tokens - 1.0, at), timedelta(0)
        wait_s = (1.0 - tokens) / self.rate_per_s
        return TokenBucket(self.rate_per_s, self.burst, tokens, at), timedelta(seconds=wait_s)
