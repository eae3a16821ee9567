"""The send decision, pure: one zone event, one campaign, one recipient -> Send | Defer | Skip.

Every outcome carries a machine reason (Braze's ``abort_type``, but for every rule), so skipped
triggers are visible in stats and dry runs. The gate is the intersection of, in this order:

1. the campaign is live and its trigger and audience match;
2. consent: ``location_offers`` for any location-triggered campaign, plus ``push_marketing`` or
   ``sms_marketing`` for the channel; a suppressed number never gets SMS. ``push_then_sms`` falls back
   to SMS when push is not possible (no push consent or no live token);
3. time: the campaign's weekly windows in the **zone's** time zone ∩ legal hours / quiet period in the
   **recipient's** zone(s). Outside, the campaign's policy drops or defers to the next common opening
   within ``max_delay_s`` — never to 3 a.m.;
4. caps at the moment of sending (customer day/week and own cadence, campaign cooldown, zone cooldown,
   one offer per visit). The returned ``buckets`` are what the service reserves atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from campaigns.legal_hours import DEFAULT_TABLE, LegalTable, legal_schedule, phone_region, recipient_zones
from campaigns.limits import CapBucket, CapContext, GlobalCaps, PastDelivery, cap_buckets, check_caps
from campaigns.model import (
    CHANNEL_PURPOSE,
    LOCATION_PURPOSE,
    Audience,
    AudienceCondition,
    Campaign,
    OutOfWindowPolicy,
    WeeklyWindow,
    ZoneInfo,
)
from campaigns.windows import Schedule, Span, closed_gates, next_common_opening, weekly
from geofence.events import ZoneEvent


@dataclass(frozen=True, slots=True)
class Recipient:
    """What the decision may know about the customer behind a device (built by the service)."""

    customer_id: str
    consents: Mapping[str, bool]  # purpose -> granted at decision time
    locale: str | None = None
    tz: str | None = None
    country: str | None = None
    subdivision: str | None = None
    phone_e164: str | None = None  # only to infer zones; never logged
    phone_suppressed: bool = False
    push_token_live: bool = False
    first_name: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    max_offers_per_day: int | None = None
    max_offers_per_week: int | None = None
    platform: str | None = None  # "ios" | "android": the device's, for the maps app of directions links


@dataclass(frozen=True, slots=True)
class DecisionPolicy:
    """Operator-wide settings of the decision."""

    global_caps: GlobalCaps = GlobalCaps()
    legal_table: LegalTable = DEFAULT_TABLE
    max_event_age: timedelta = timedelta(minutes=30)  # older triggers (late batches) are not acted on


@dataclass(frozen=True, slots=True)
class Send:
    channel: str
    at: datetime
    expires_at: datetime
    reason: str = "ok"
    buckets: tuple[CapBucket, ...] = ()
    outcome: str = "send"


@dataclass(frozen=True, slots=True)
class Defer:
    channel: str
    until: datetime
    expires_at: datetime
    reason: str
    buckets: tuple[CapBucket, ...] = ()
    outcome: str = "defer"

    @property
    def at(self) -> datetime:
        return self.until


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str
    channel: str | None = None
    outcome: str = "skip"


Decision = Send | Defer | Skip


def _attribute(recipient: Recipient, name: str) -> Any:
    if name in ("locale", "country", "tz", "subdivision", "first_name"):
        return getattr(recipient, name)
    return recipient.attributes.get(name)


def _condition_holds(cond: AudienceCondition, value: Any) -> bool:
    op, expected = cond.op, cond.value
    if op == "exists":
        return value is not None
    if op == "missing":
        return value is None
    if op == "eq":
        return bool(value == expected)
    if op == "ne":
        return bool(value != expected)
    if op == "in":
        return value in expected
    if op == "not_in":
        return value not in expected
    if value is None:
        return False
    try:
        if op == "gte":
            return bool(value >= expected)
        if op == "lte":
            return bool(value <= expected)
        if op == "gt":
            return bool(value > expected)
        return bool(value < expected)  # lt
    except TypeError:
        return False  # "gold" >= 3: a type mismatch excludes, it does not crash


def audience_mismatch(audience: Audience, recipient: Recipient) -> str | None:
    """The first condition the recipient fails (as a reason), or None."""
    for cond in audience.all:
        if not _condition_holds(cond, _attribute(recipient, cond.attribute)):
            return f"audience:{cond.attribute}"
    return None


def choose_channel(campaign: Campaign, recipient: Recipient) -> tuple[str | None, str]:
    """(channel, reason): the first of the campaign's channels this recipient may receive."""
    reasons: list[str] = []
    for channel in campaign.channels():
        purpose = CHANNEL_PURPOSE[channel]
        if not recipient.consents.get(purpose, False):
            reasons.append(f"no_consent:{purpose}")
        elif channel == "push" and not recipient.push_token_live:
            reasons.append("no_push_token")
        elif channel == "sms" and not recipient.phone_e164:
            reasons.append("no_phone")
        elif channel == "sms" and recipient.phone_suppressed:
            reasons.append("suppressed")
        else:
            return channel, ("fallback:" + reasons[0]) if reasons else "ok"
    return None, reasons[-1] if len(reasons) == 1 else "+".join(reasons)


@lru_cache(maxsize=4096)
def _window_gate(windows: tuple[WeeklyWindow, ...], tz: str) -> Schedule:
    return weekly("campaign_window", tz, [Span(w.days, w.start, w.end) for w in windows])


def schedules_for(
    campaign: Campaign, zone: ZoneInfo, recipient: Recipient, channel: str, policy: DecisionPolicy
) -> list[Schedule]:
    """The time gates of a send: campaign windows in store time, legal/quiet hours in recipient time."""
    gates: list[Schedule] = []
    if campaign.windows:
        gates.append(_window_gate(campaign.windows, zone.tz))
    country, subdivision = recipient.country, recipient.subdivision
    if not country and recipient.phone_e164:
        country, subdivision = phone_region(recipient.phone_e164)
    country = country or zone.country
    zones = recipient_zones(recipient.tz, recipient.phone_e164, fallback=zone.tz)
    quiet = campaign.push_quiet_hours
    legal = legal_schedule(
        channel,
        country=country,
        subdivision=subdivision,
        zones=zones,
        table=policy.legal_table,
        quiet_override=(quiet.start, quiet.end) if quiet and channel == "push" else None,
    )
    if legal is not None:
        gates.append(legal)
    return gates


def _when(gates: Sequence[Schedule], rule: OutOfWindowPolicy, at: datetime) -> tuple[datetime | None, str]:
    """When the send may happen under the campaign's out-of-window policy, and why (if not now)."""
    closed = closed_gates(gates, at)
    if not closed:
        return at, "ok"
    why = "+".join(sorted({name.split(":")[0] for name in closed}))
    if rule.mode == "drop":
        return None, f"out_of_window:dropped:{why}"
    opening = next_common_opening(gates, at, within=timedelta(seconds=rule.max_delay_s))
    if opening is None:
        return None, f"out_of_window:beyond_max_delay:{why}"
    return opening, f"deferred:{why}"


def decide(
    event: ZoneEvent,
    campaign: Campaign,
    zone: ZoneInfo,
    recipient: Recipient | None,
    history: Sequence[PastDelivery],
    at: datetime,
    policy: DecisionPolicy = DecisionPolicy(),
) -> Decision:
    """Decide what to do with one trigger of one campaign for one recipient.

    Parameters
    ----------
    event : the zone transition (its ``at`` is when it happened).
    campaign : a validated campaign; zone : the event's zone (time zone, tags).
    recipient : the customer behind the device, or None (unknown device: skipped).
    history : the customer's deliveries that count against caps.
    at : tz-aware decision instant (the service passes its clock; a dry run the event time).

    Returns
    -------
    Send(channel, at) | Defer(channel, until) | Skip(reason); Send/Defer carry the cap buckets.
    """
    if not campaign.is_live(at):
        return Skip("campaign_not_live")
    if not campaign.trigger.matches(event.kind, zone.id, zone.tags):
        return Skip("trigger_mismatch")
    if at - event.at > policy.max_event_age:
        return Skip("event_too_old")
    if recipient is None:
        return Skip("unknown_customer")
    mismatch = audience_mismatch(campaign.audience, recipient)
    if mismatch:
        return Skip(mismatch)
    if not recipient.consents.get(LOCATION_PURPOSE, False):
        return Skip(f"no_consent:{LOCATION_PURPOSE}")
    channel, channel_reason = choose_channel(campaign, recipient)
    if channel is None:
        return Skip(channel_reason)
    gates = schedules_for(campaign, zone, recipient, channel, policy)
    send_at, when_reason = _when(gates, campaign.out_of_window, at)
    if send_at is None:
        return Skip(when_reason, channel)
    if campaign.ends_at is not None and send_at >= campaign.ends_at:
        return Skip("out_of_window:after_campaign_end", channel)
    ctx = CapContext(
        campaign_id=campaign.id,
        zone_id=zone.id,
        visit_id=event.visit_id,
        caps=campaign.caps,
        global_caps=policy.global_caps,
        tz=recipient_zones(recipient.tz, recipient.phone_e164, fallback=zone.tz)[0],
        customer_per_day=recipient.max_offers_per_day,
        customer_per_week=recipient.max_offers_per_week,
    )
    capped = check_caps(history, ctx, send_at)
    if capped:
        return Skip(capped, channel)
    buckets = tuple(cap_buckets(ctx, send_at))
    expires_at = send_at + timedelta(seconds=campaign.offer_ttl_s)
    if send_at == at:
        return Send(channel, at, expires_at, channel_reason, buckets)
    reason = when_reason if channel_reason == "ok" else f"{when_reason};{channel_reason}"
    return Defer(channel, send_at, expires_at, reason, buckets)
