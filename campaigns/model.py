"""Campaigns as validated, immutable values: what triggers them, who they target, what they say and when.

The definition is plain JSON (stored as is by the service) and parsed here with pydantic, so an admin
gets every problem at once (``CampaignInvalid.reasons``) and the decision core only ever sees a valid,
frozen ``Campaign``. Send windows are weekly wall-clock windows in the **zone's** time zone.
"""

from __future__ import annotations

import string
from datetime import datetime, time
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geofence.events import TransitionKind

LOCATION_PURPOSE = "location_offers"
CHANNEL_PURPOSE = {"push": "push_marketing", "sms": "sms_marketing"}
PLACEHOLDERS = frozenset(
    {"first_name", "store_name", "distance", "directions_url", "offer_expiry", "campaign_name"}
)
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
NIGHT_FLOOR_END = time(6, 0)


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    ENDED = "ended"


# Allowed status changes; "ended" is final so that stats on a finished campaign stay stable.
STATUS_TRANSITIONS: dict[CampaignStatus, frozenset[CampaignStatus]] = {
    CampaignStatus.DRAFT: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.ACTIVE: frozenset({CampaignStatus.PAUSED, CampaignStatus.ENDED}),
    CampaignStatus.PAUSED: frozenset({CampaignStatus.ACTIVE, CampaignStatus.ENDED}),
    CampaignStatus.ENDED: frozenset(),
}


class ChannelChoice(StrEnum):
    PUSH = "push"
    SMS = "sms"
    PUSH_THEN_SMS = "push_then_sms"


class CampaignInvalid(ValueError):
    """The definition is not usable; ``reasons`` lists every problem ("field: message")."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_hhmm(value: Any) -> time:
    if isinstance(value, time):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a time as 'HH:MM'")
    parts = value.split(":")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"expected a time as 'HH:MM', got {value!r}")
    hour, minute = int(parts[0]), int(parts[1])
    if hour == 24 and minute == 0:
        return time(0, 0)  # "24:00" means the next midnight; windows treat end <= start as crossing it
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise ValueError(f"time out of range: {value!r}")
    return time(hour, minute)


def parse_days(value: Any) -> frozenset[int]:
    """Days as names ("mon".."sun", ranges "mon-fri") or ISO-less ints 0=Monday..6=Sunday."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    days: set[int] = set()
    for item in value:
        if isinstance(item, int) and not isinstance(item, bool):
            if not 0 <= item <= 6:
                raise ValueError(f"day out of range 0..6: {item}")
            days.add(item)
            continue
        text = str(item).lower()[:7]
        if "-" in text:
            first, last = (DAY_NAMES.index(p[:3]) if p[:3] in DAY_NAMES else -1 for p in text.split("-", 1))
            if first < 0 or last < 0:
                raise ValueError(f"unknown day range: {item!r}")
            span = range(first, last + 1) if first <= last else [*range(first, 7), *range(0, last + 1)]
            days.update(span)
        elif text[:3] in DAY_NAMES:
            days.add(DAY_NAMES.index(text[:3]))
        else:
            raise ValueError(f"unknown day: {item!r}")
    if not days:
        raise ValueError("at least one day is required")
    return frozenset(days)


class WeeklyWindow(_Frozen):
    """Open on ``days`` from ``start`` to ``end`` local time; ``end <= start`` crosses midnight (the
    window belongs to the day it opens on: fri 22:00-02:00 is Friday night into Saturday)."""

    days: frozenset[int]
    start: time
    end: time

    _days = field_validator("days", mode="before")(parse_days)
    _times = field_validator("start", "end", mode="before")(parse_hhmm)

    def crosses_midnight(self) -> bool:
        return self.end <= self.start

    def as_json(self) -> dict[str, Any]:
        return {
            "days": [DAY_NAMES[d] for d in sorted(self.days)],
            "start": self.start.strftime("%H:%M"),
            "end": self.end.strftime("%H:%M"),
        }


class Trigger(_Frozen):
    """Which zone transitions start the campaign: zones by id or by tag (either matches)."""

    kinds: frozenset[TransitionKind] = frozenset({TransitionKind.ENTER})
    zone_ids: frozenset[str] = Field(default=frozenset(), max_length=10_000)
    zone_tags: frozenset[str] = Field(default=frozenset(), max_length=100)

    @model_validator(mode="after")
    def _needs_zones(self) -> Trigger:
        if not self.zone_ids and not self.zone_tags:
            raise ValueError("a trigger needs zone_ids or zone_tags")
        if not self.kinds:
            raise ValueError("a trigger needs at least one kind (enter, dwell, exit)")
        return self

    def matches(self, kind: str, zone_id: str, zone_tags: frozenset[str] | set[str]) -> bool:
        if kind not in self.kinds:
            return False
        return zone_id in self.zone_ids or bool(self.zone_tags & set(zone_tags))


AudienceOp = Literal["eq", "ne", "in", "not_in", "gte", "lte", "gt", "lt", "exists", "missing"]


class AudienceCondition(_Frozen):
    """One test on a customer attribute: ``locale``, ``country``, ``tz``, ``subdivision`` or any key of
    the customer's free ``attributes`` (e.g. ``loyalty_tier``)."""

    attribute: str = Field(min_length=1)
    op: AudienceOp = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_shape(self) -> AudienceCondition:
        if self.op in ("in", "not_in") and not isinstance(self.value, list | tuple):
            raise ValueError(f"op {self.op!r} needs a list value")
        return self


class Audience(_Frozen):
    """All conditions must hold (an empty audience is everyone with the required consents)."""

    all: tuple[AudienceCondition, ...] = Field(default=(), max_length=50)


class Template(_Frozen):
    """One locale's message. Placeholders: {first_name} {store_name} {distance} {directions_url}
    {offer_expiry} {campaign_name}."""

    title: str | None = None
    body: str = Field(min_length=1, max_length=1000)

    @field_validator("title", "body")
    @classmethod
    def _known_placeholders(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(value) if f is not None}
        except ValueError as exc:
            raise ValueError(f"malformed placeholder: {exc}") from None
        unknown = sorted(f for f in fields if f not in PLACEHOLDERS)
        if unknown:
            raise ValueError(f"unknown placeholder(s) {unknown}; known: {sorted(PLACEHOLDERS)}")
        return value


class OutOfWindowPolicy(_Frozen):
    """What to do with a trigger that falls outside the allowed hours: drop it, or defer it to the next
    opening if that comes within ``max_delay_s`` (and before the offer expires)."""

    mode: Literal["drop", "defer"] = "drop"
    max_delay_s: int = Field(default=0, ge=0, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _defer_needs_delay(self) -> OutOfWindowPolicy:
        if self.mode == "defer" and self.max_delay_s <= 0:
            raise ValueError("mode 'defer' needs max_delay_s > 0")
        return self


class CampaignCaps(_Frozen):
    """Campaign-level pressure rules (the customer-wide day/week caps are global, see limits)."""

    cooldown_s: int = Field(default=24 * 3600, ge=0)  # same campaign to the same customer
    zone_cooldown_s: int = Field(default=6 * 3600, ge=0)  # any campaign, same customer, same zone
    one_per_visit: bool = True


class QuietHours(_Frozen):
    """A push quiet period in the recipient's time zone, e.g. 21:00-08:00 (crosses midnight)."""

    start: time
    end: time

    _times = field_validator("start", "end", mode="before")(parse_hhmm)

    @model_validator(mode="after")
    def _keeps_the_night(self) -> QuietHours:
        # A campaign may narrow the default 21:00-08:00, never open the small hours: whatever it says,
        # 00:00-06:00 stays quiet ("never at 3 a.m.").
        covers_midnight = self.end < self.start or self.start == time(0, 0)
        if not covers_midnight or self.end < NIGHT_FLOOR_END:
            raise ValueError("a push quiet period must keep at least 00:00-06:00 quiet (e.g. 22:00-07:00)")
        return self


class Campaign(_Frozen):
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    status: CampaignStatus = CampaignStatus.DRAFT
    priority: int = 0  # higher wins when several campaigns match one event
    trigger: Trigger
    audience: Audience = Audience()
    channel: ChannelChoice = ChannelChoice.PUSH
    templates: dict[str, Template] = Field(min_length=1, max_length=50)
    default_locale: str = "fr"
    windows: tuple[WeeklyWindow, ...] = Field(
        default=(), max_length=50
    )  # empty = any time (legal hours apply)
    out_of_window: OutOfWindowPolicy = OutOfWindowPolicy()
    caps: CampaignCaps = CampaignCaps()
    offer_ttl_s: int = Field(default=3 * 3600, gt=0)
    push_quiet_hours: QuietHours | None = None  # narrows the default push quiet period
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    advertiser: str | None = None  # named in the SMS legal mention
    sender: str | None = None  # SMS sender id / short code, e.g. "36111"
    # Presence re-check for deferred offers: still inside, or left less than this long / this far ago.
    near_exit_s: int = Field(default=15 * 60, ge=0)
    near_m: float = Field(default=500.0, ge=0)
    # Share of qualifying customers held back (recorded as skipped "holdout", deterministic per
    # customer: campaigns.holdout) so campaigns.attribution can measure the uplift. 0 = nobody.
    holdout_share: float = Field(default=0.0, ge=0.0, le=1.0)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("datetimes must carry a time zone offset (e.g. 2026-11-23T09:00:00Z)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Campaign:
        if self.default_locale not in self.templates:
            raise ValueError(f"templates must include the default locale {self.default_locale!r}")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def template_for(self, locale: str | None) -> tuple[str, Template]:
        """The customer's locale, then its language ("fr" for "fr-BE"), then the default."""
        for candidate in (locale, (locale or "").split("-")[0].split("_")[0]):
            if candidate and candidate in self.templates:
                return candidate, self.templates[candidate]
        return self.default_locale, self.templates[self.default_locale]

    def is_live(self, at: datetime) -> bool:
        return (
            self.status == CampaignStatus.ACTIVE
            and (self.starts_at is None or self.starts_at <= at)
            and (self.ends_at is None or at < self.ends_at)
        )

    def channels(self) -> tuple[str, ...]:
        return ("push", "sms") if self.channel == ChannelChoice.PUSH_THEN_SMS else (str(self.channel),)

    def definition(self) -> dict[str, Any]:
        """The JSON form (round-trips through ``parse_campaign``)."""
        data = self.model_dump(mode="json")
        data["windows"] = [w.as_json() for w in self.windows]
        data["trigger"]["kinds"] = sorted(data["trigger"]["kinds"])
        data["trigger"]["zone_ids"] = sorted(data["trigger"]["zone_ids"])
        data["trigger"]["zone_tags"] = sorted(data["trigger"]["zone_tags"])
        return data


def parse_campaign(data: dict[str, Any]) -> Campaign:
    """Validate a JSON definition; raise ``CampaignInvalid`` with one reason per problem."""
    try:
        return Campaign.model_validate(data)
    except ValidationError as exc:
        reasons = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "campaign"
            reasons.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise CampaignInvalid(reasons) from None


class ZoneInfo(_Frozen):
    """What a campaign needs to know about the zone of an event (a read-only view of the zone)."""

    id: str
    name: str = ""
    tz: str = "UTC"
    tags: frozenset[str] = frozenset()
    country: str | None = None
    lat: float | None = None
    lng: float | None = None
    travel_mode: str | None = None  # "walk" | "drive": how customers come (the zone's sizing), for directions
