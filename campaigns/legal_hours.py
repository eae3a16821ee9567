"""Legal sending hours as data an operator can edit, evaluated in the recipient's time zone(s).

The defaults are the conservative intersection of the sources in the campaign anchors (§2.3, §2.4):

- French marketing SMS: Mon-Fri 08:30-20:00, Sat 10:00-18:00, never on Sundays or French public
  holidays (the recipient's subdivision included: Alsace-Moselle "57"/"67"/"68" adds Good Friday and
  26 December; overseas departments "971".. have their own). An operator/industry rule, not a statute.
- US marketing: 08:00-21:00 at the called party's location (47 CFR 64.1200(c)(1)).
- Anywhere else, SMS 08:00-21:00; push has no legal rule, only a product quiet period 21:00-08:00
  that a campaign may narrow.

The recipient's zone is the customer's own ``tz`` when known, else every zone ``phonenumbers`` gives
for the number; a send is allowed only when it is allowed in **every** candidate zone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfoNotFoundError

from campaigns.model import parse_days, parse_hhmm
from campaigns.windows import AllOf, Schedule, Span, quiet_period, weekly, zone

ANY_COUNTRY = "*"

DEFAULT_LEGAL_TABLE: dict[str, Any] = {
    "sms": {
        "FR": {
            "hours": {"mon-fri": ["08:30-20:00"], "sat": ["10:00-18:00"]},
            "closed_on_public_holidays": True,
            "source": "FR operator rule (AF2M members, Bouygues/SFR, Acoustic); intersection of vendor "
            "tables, campaign-anchors §2.3",
        },
        "US": {
            "hours": {"mon-sun": ["08:00-21:00"]},
            "closed_on_public_holidays": False,
            "source": "47 CFR 64.1200(c)(1): 8 a.m.-9 p.m. at the called party's location",
        },
        ANY_COUNTRY: {
            "hours": {"mon-sun": ["08:00-21:00"]},
            "closed_on_public_holidays": False,
            "source": "engine default for countries without an entry",
        },
    },
    "push": {
        ANY_COUNTRY: {"quiet": "21:00-08:00", "source": "product default quiet period (no legal rule)"},
    },
}

# Overseas French regions have their own ITU codes; their holidays are France's with a subdivision.
OVERSEAS_FR = {"GP": "971", "MQ": "972", "GF": "973", "RE": "974", "YT": "976", "BL": "BL", "MF": "MF"}


# Customers carry a department number; ``holidays`` names Bas-Rhin and Haut-Rhin together as the
# European Collectivity of Alsace ("6AE"), Moselle as "57".
SUBDIVISION_ALIASES = {("FR", "67"): "6AE", ("FR", "68"): "6AE"}


@dataclass(frozen=True)
class LegalRule:
    channel: str
    country: str
    spans: tuple[Span, ...] = ()
    quiet: tuple[time, time] | None = None
    closed_on_public_holidays: bool = False
    source: str = ""


@dataclass(frozen=True, eq=False)  # identity hash: a key of the schedule cache
class LegalTable:
    rules: Mapping[tuple[str, str], LegalRule]

    def rule(self, channel: str, country: str | None) -> LegalRule | None:
        return self.rules.get((channel, (country or "").upper())) or self.rules.get((channel, ANY_COUNTRY))


def _parse_range(text: str) -> tuple[time, time]:
    start, _, end = str(text).partition("-")
    if not end:
        raise ValueError(f"expected 'HH:MM-HH:MM', got {text!r}")
    return parse_hhmm(start.strip()), parse_hhmm(end.strip())


def load_legal_table(data: Mapping[str, Any]) -> LegalTable:
    """Validate an operator's table (same shape as ``DEFAULT_LEGAL_TABLE``); errors name the entry."""
    rules: dict[tuple[str, str], LegalRule] = {}
    problems: list[str] = []
    for channel, countries in data.items():
        for country, entry in (countries or {}).items():
            where = f"{channel}.{country}"
            try:
                spans = []
                for days, ranges in (entry.get("hours") or {}).items():
                    for text in ranges:
                        start, end = _parse_range(text)
                        spans.append(Span(parse_days(days), start, end))
                quiet = _parse_range(entry["quiet"]) if entry.get("quiet") else None
                rules[(channel, country.upper())] = LegalRule(
                    channel=channel,
                    country=country.upper(),
                    spans=tuple(spans),
                    quiet=quiet,
                    closed_on_public_holidays=bool(entry.get("closed_on_public_holidays", False)),
                    source=str(entry.get("source", "")),
                )
            except (ValueError, TypeError, AttributeError, KeyError) as exc:
                problems.append(f"{where}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return LegalTable(rules)


DEFAULT_TABLE = load_legal_table(DEFAULT_LEGAL_TABLE)


def default_table_data() -> dict[str, Any]:
    """A copy of the default table for an operator to edit."""
    return copy.deepcopy(DEFAULT_LEGAL_TABLE)


@lru_cache(maxsize=256)
def _holiday_dates(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    import holidays

    subdivision = SUBDIVISION_ALIASES.get((country, subdivision or ""), subdivision)
    try:
        days = holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError:
        return frozenset()
    except Exception:
        # An unknown subdivision must not lift the national holidays.
        days = holidays.country_holidays(country, years=year)
    return frozenset(days.keys())


def is_public_holiday(day: date, country: str, subdivision: str | None = None) -> bool:
    """National holidays plus the subdivision's (``holidays`` package, e.g. FR "57" adds Good Friday)."""
    return day in _holiday_dates(country.upper(), subdivision, day.year)


@dataclass(frozen=True)
class HolidayClosure:
    """Closed on the public holidays of a country and subdivision, and of each place in ``also`` (the
    store's); hashable: schedules are cached."""

    country: str
    subdivision: str | None = None
    also: tuple[tuple[str, str | None], ...] = ()

    def __call__(self, day: date) -> bool:
        return is_public_holiday(day, self.country, self.subdivision) or any(
            is_public_holiday(day, country, subdivision) for country, subdivision in self.also
        )


def holiday_closure(
    country: str, subdivision: str | None, also: tuple[tuple[str, str | None], ...] = ()
) -> Callable[[date], bool]:
    here = (country.upper(), subdivision)
    return HolidayClosure(here[0], subdivision, tuple(p for p in also if (p[0].upper(), p[1]) != here))


@lru_cache(maxsize=4096)
def phone_zones(phone_e164: str) -> tuple[str, ...]:
    """Candidate IANA zones of a number (``phonenumbers``); empty when unknown."""
    import phonenumbers
    from phonenumbers import timezone as pn_timezone

    try:
        number = phonenumbers.parse(phone_e164, None)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(z for z in pn_timezone.time_zones_for_number(number) if z != "Etc/Unknown")
    return tuple(sorted(zones))


@lru_cache(maxsize=4096)
def phone_region(phone_e164: str) -> tuple[str | None, str | None]:
    """(country, subdivision) of a number's region, mapping French overseas regions onto FR."""
    import phonenumbers

    try:
        region = phonenumbers.region_code_for_number(phonenumbers.parse(phone_e164, None))
    except phonenumbers.NumberParseException:
        return None, None
    if region in OVERSEAS_FR:
        return "FR", OVERSEAS_FR[region]
    return region, None


def recipient_zones(tz: str | None, phone_e164: str | None, fallback: str) -> tuple[str, ...]:
    """The customer's own zone if valid; else the number's candidate zones; else ``fallback``."""
    if tz:
        try:
            zone(tz)
            return (tz,)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    if phone_e164:
        zones = phone_zones(phone_e164)
        if zones:
            return zones
    return (fallback,)


@lru_cache(maxsize=4096)
def legal_schedule(
    channel: str,
    *,
    country: str | None,
    subdivision: str | None,
    zones: tuple[str, ...],
    table: LegalTable = DEFAULT_TABLE,
    quiet_override: tuple[time, time] | None = None,
    store_place: tuple[str, str | None] | None = None,
) -> Schedule | None:
    """When ``channel`` may carry marketing to this recipient, in all of ``zones`` at once (cached).

    ``quiet_override`` (a campaign's own push quiet period) replaces the table's quiet period.
    ``store_place`` (country, subdivision of the store): where the rule closes on public holidays, the
    store's holidays close it too (an offer from a store in Moselle is not sent on Good Friday, wherever
    the recipient lives).
    Returns None when no rule applies (always open).
    """
    rule = table.rule(channel, country)
    if rule is None:
        return None
    members: list[Schedule] = []
    for tz_name in zones:
        if rule.spans:
            also = ((store_place[0].upper(), store_place[1]),) if store_place and store_place[0] else ()
            closed = (
                holiday_closure(country or rule.country, subdivision, also)
                if rule.closed_on_public_holidays and (country or rule.country) != ANY_COUNTRY
                else None
            )
            members.append(weekly(f"legal_hours:{tz_name}", tz_name, rule.spans, closed))
        quiet = quiet_override or rule.quiet
        if quiet is not None:
            members.append(quiet_period(f"quiet_hours:{tz_name}", tz_name, quiet[0], quiet[1]))
    if not members:
        return None
    name = "legal_hours" if rule.spans else "quiet_hours"
    return members[0] if len(members) == 1 else AllOf(name, tuple(members))
