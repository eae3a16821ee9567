"""Legal sending hours: French SMS table, public holidays with subdivisions, US hours, candidate zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from campaigns.legal_hours import (
    default_table_data,
    is_public_holiday,
    legal_schedule,
    load_legal_table,
    phone_region,
    recipient_zones,
)
from campaigns.windows import next_common_opening

PARIS = ("Europe/Paris",)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fr_sms(subdivision: str | None = None, zones: tuple[str, ...] = PARIS):
    schedule = legal_schedule("sms", country="FR", subdivision=subdivision, zones=zones)
    assert schedule is not None
    return schedule


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (utc(2026, 11, 23, 7, 29), False),  # Monday 08:29 Paris
        (utc(2026, 11, 23, 7, 30), True),  # Monday 08:30
        (utc(2026, 11, 23, 18, 59), True),  # Monday 19:59
        (utc(2026, 11, 23, 19, 0), False),  # Monday 20:00
        (utc(2026, 11, 28, 8, 59), False),  # Saturday 09:59
        (utc(2026, 11, 28, 9, 0), True),  # Saturday 10:00
        (utc(2026, 11, 28, 17, 0), False),  # Saturday 18:00
        (utc(2026, 11, 29, 12, 0), False),  # Sunday
        (utc(2026, 11, 11, 12, 0), False),  # Wednesday 11 November: Armistice
        (utc(2026, 7, 14, 10, 0), False),  # Bastille Day
        (utc(2026, 7, 15, 10, 0), True),  # summer: 08:30 CEST = 06:30Z
        (utc(2026, 7, 15, 6, 29), False),
    ],
)
def test_french_marketing_sms_hours(at: datetime, expected: bool) -> None:
    assert fr_sms().is_open(at) is expected


def test_good_friday_and_st_stephen_only_in_alsace_moselle() -> None:
    good_friday = utc(2026, 4, 3, 10, 0)  # Friday 3 April 2026, 12:00 Paris
    st_stephen = utc(2029, 12, 26, 10, 0)  # Wednesday 26 December 2029
    for subdivision in ("57", "67", "68"):
        assert not fr_sms(subdivision).is_open(good_friday)
        assert not fr_sms(subdivision).is_open(st_stephen)
    assert fr_sms().is_open(good_friday)
    assert fr_sms("75").is_open(st_stephen)
    assert is_public_holiday(date(2026, 4, 3), "FR", "57")
    assert not is_public_holiday(date(2026, 4, 3), "FR", None)


def test_overseas_department_has_its_own_holidays_and_zone() -> None:
    # 27 May is the abolition of slavery day in Guadeloupe (971), not in mainland France.
    assert is_public_holiday(date(2026, 5, 27), "FR", "971")
    assert not is_public_holiday(date(2026, 5, 27), "FR", None)
    assert phone_region("+590690123456") == ("FR", "971")
    assert recipient_zones(None, "+590690123456", fallback="Europe/Paris") == ("America/Guadeloupe",)


def test_deferral_skips_sunday_and_holiday_monday() -> None:
    # Saturday 4 April 2026 18:30 Paris -> Sunday closed -> Easter Monday (6 April) closed -> Tue 08:30.
    assert next_common_opening([fr_sms()], utc(2026, 4, 4, 16, 30)) == utc(2026, 4, 7, 6, 30)


def test_us_hours_in_the_recipients_zone() -> None:
    schedule = legal_schedule("sms", country="US", subdivision=None, zones=("America/Los_Angeles",))
    assert schedule is not None
    assert not schedule.is_open(utc(2026, 11, 23, 15, 0))  # 07:00 in Los Angeles
    assert schedule.is_open(utc(2026, 11, 23, 16, 0))  # 08:00
    assert schedule.is_open(utc(2026, 11, 29, 16, 0))  # Sundays are fine in the US table
    assert not schedule.is_open(utc(2026, 11, 24, 5, 0))  # 21:00 the day before


def test_every_candidate_zone_must_allow() -> None:
    # A toll-free number has ~40 candidate zones: allowed only when 08:00-21:00 holds in all of them.
    zones = recipient_zones(None, "+18005550100", fallback="UTC")
    assert len(zones) > 10
    schedule = legal_schedule("sms", country="US", subdivision=None, zones=zones)
    assert schedule is not None
    assert not schedule.is_open(utc(2026, 11, 23, 13, 30))  # 08:30 New York, 03:30 Honolulu
    single = legal_schedule("sms", country="US", subdivision=None, zones=("America/New_York",))
    assert single is not None and single.is_open(utc(2026, 11, 23, 13, 30))


def test_customer_zone_wins_over_the_number() -> None:
    assert recipient_zones("Europe/Paris", "+18005550100", fallback="UTC") == ("Europe/Paris",)
    assert recipient_zones("Not/AZone", "+33612345678", fallback="UTC") == ("Europe/Paris",)
    assert recipient_zones(None, None, fallback="Europe/Berlin") == ("Europe/Berlin",)


def test_push_quiet_period_and_campaign_narrowing() -> None:
    default = legal_schedule("push", country="FR", subdivision=None, zones=PARIS)
    narrowed = legal_schedule(
        "push", country="FR", subdivision=None, zones=PARIS, quiet_override=(time(22, 0), time(7, 0))
    )
    assert default is not None and narrowed is not None
    at = utc(2026, 11, 23, 20, 30)  # 21:30 Paris
    assert not default.is_open(at)
    assert narrowed.is_open(at)
    assert default.is_open(utc(2026, 11, 29, 12, 0))  # push has no Sunday rule


def test_operator_can_edit_the_table() -> None:
    data = default_table_data()
    data["sms"]["FR"]["hours"]["sat"] = ["10:00-19:00"]
    table = load_legal_table(data)
    relaxed = legal_schedule("sms", country="FR", subdivision=None, zones=PARIS, table=table)
    assert relaxed is not None and relaxed.is_open(utc(2026, 11, 28, 17, 30))  # Sat 18:30
    assert not fr_sms().is_open(utc(2026, 11, 28, 17, 30))  # the default is untouched


def test_bad_table_names_the_entry() -> None:
    with pytest.raises(ValueError, match=r"sms\.FR: .*HH:MM"):
        load_legal_table({"sms": {"FR": {"hours": {"mon": ["8h30 to 20h"]}}}})
