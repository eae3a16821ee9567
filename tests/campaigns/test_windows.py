"""Weekly windows in a zone: DST changes in Europe/Paris, windows across midnight, next opening."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from campaigns.model import parse_days
from campaigns.windows import Span, closed_gates, next_common_opening, quiet_period, weekly

PARIS = "Europe/Paris"
WEEKDAYS = frozenset(range(5))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def lunch() -> object:
    return weekly("campaign_window", PARIS, [Span(WEEKDAYS, time(11, 30), time(12, 0))])


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        # Friday 27 March 2026 (winter, UTC+1): 11:30 local = 10:30Z
        (utc(2026, 3, 27, 10, 29), False),
        (utc(2026, 3, 27, 10, 30), True),
        (utc(2026, 3, 27, 10, 59), True),
        (utc(2026, 3, 27, 11, 0), False),
        # Monday 30 March 2026, after the change (UTC+2): 11:30 local = 09:30Z
        (utc(2026, 3, 30, 9, 30), True),
        (utc(2026, 3, 30, 10, 30), False),
        # Monday 26 October 2026, after the change back (UTC+1): 10:30Z again
        (utc(2026, 10, 26, 10, 30), True),
        (utc(2026, 10, 26, 9, 30), False),
        # Saturday: closed
        (utc(2026, 3, 28, 10, 40), False),
    ],
)
def test_window_follows_local_wall_clock_across_dst(at: datetime, expected: bool) -> None:
    assert lunch().is_open(at) is expected


def test_next_opening_over_the_spring_forward_weekend() -> None:
    # Friday 27 March 12:00 local, closed; the next opening is Monday 30 March 11:30 CEST = 09:30Z.
    assert next_common_opening([lunch()], utc(2026, 3, 27, 11, 0)) == utc(2026, 3, 30, 9, 30)


def test_next_opening_over_the_autumn_weekend() -> None:
    # Friday 23 October 2026 after lunch (CEST) -> Monday 26 October 11:30 CET = 10:30Z.
    assert next_common_opening([lunch()], utc(2026, 10, 23, 11, 0)) == utc(2026, 10, 26, 10, 30)


def test_window_across_midnight_belongs_to_the_day_it_opens() -> None:
    late = weekly("w", PARIS, [Span(frozenset({4}), time(22, 0), time(2, 0))])  # Friday night
    assert late.is_open(utc(2026, 11, 27, 21, 30))  # Fri 22:30 local
    assert late.is_open(utc(2026, 11, 28, 0, 30))  # Sat 01:30 local, still Friday's window
    assert not late.is_open(utc(2026, 11, 28, 1, 0))  # Sat 02:00 local: closed
    assert not late.is_open(utc(2026, 11, 28, 21, 30))  # Saturday night: not a Friday
    assert not late.is_open(utc(2026, 11, 27, 0, 30))  # Fri 01:30 local belongs to Thursday: closed
    assert next_common_opening([late], utc(2026, 11, 28, 1, 0)) == utc(2026, 12, 4, 21, 0)


def test_window_across_midnight_on_the_night_clocks_go_back() -> None:
    # Saturday 24 -> Sunday 25 October 2026: 23:00 CEST (21:00Z) to 03:00 CET (02:00Z) lasts 5 hours.
    night = weekly("w", PARIS, [Span(frozenset({5}), time(23, 0), time(3, 0))])
    ((opens, closes),) = list(night.intervals(date(2026, 10, 24), date(2026, 10, 24)))
    assert (opens, closes) == (utc(2026, 10, 24, 21, 0), utc(2026, 10, 25, 2, 0))
    assert closes - opens == timedelta(hours=5)


def test_opening_in_the_spring_gap_moves_forward_by_the_gap() -> None:
    # 02:30 does not exist on Sunday 29 March 2026 in Paris: the window opens at 03:30 CEST (01:30Z).
    gap = weekly("w", PARIS, [Span(frozenset({6}), time(2, 30), time(4, 0))])
    assert next_common_opening([gap], utc(2026, 3, 28, 12, 0)) == utc(2026, 3, 29, 1, 30)
    assert not gap.is_open(utc(2026, 3, 29, 1, 0))  # 03:00 CEST


def test_quiet_period_crosses_midnight() -> None:
    quiet = quiet_period("quiet_hours", PARIS, time(21, 0), time(8, 0))
    assert not quiet.is_open(utc(2026, 11, 23, 2, 0))  # 03:00 local
    assert quiet.is_open(utc(2026, 11, 23, 7, 0))  # 08:00 local
    assert not quiet.is_open(utc(2026, 11, 23, 20, 0))  # 21:00 local
    assert next_common_opening([quiet], utc(2026, 11, 23, 20, 0)) == utc(2026, 11, 24, 7, 0)


def test_store_and_recipient_in_different_zones_intersect() -> None:
    # Store in Paris open 17:30-18:00; recipient in New York must not be reached before 08:00 there.
    store = weekly("campaign_window", PARIS, [Span(frozenset(range(7)), time(17, 30), time(18, 0))])
    recipient = weekly(
        "legal_hours", "America/New_York", [Span(frozenset(range(7)), time(8, 0), time(21, 0))]
    )
    # 23 Nov 2026: Paris 17:30 = 16:30Z = 11:30 New York: both open.
    assert next_common_opening([store, recipient], utc(2026, 11, 23, 16, 40)) == utc(2026, 11, 23, 16, 40)
    # Recipient in Honolulu (UTC-10): 16:30Z is 06:30 there -> never both open on any day.
    hawaii = weekly("legal_hours", "Pacific/Honolulu", [Span(frozenset(range(7)), time(8, 0), time(21, 0))])
    assert next_common_opening([store, hawaii], utc(2026, 11, 23, 12, 0)) is None
    assert closed_gates([store, hawaii], utc(2026, 11, 23, 16, 40)) == ["legal_hours"]


def test_naive_instant_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_common_opening([lunch()], datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("spec", "days"),
    [("mon-fri", {0, 1, 2, 3, 4}), ("sat,sun", {5, 6}), ("fri-mon", {4, 5, 6, 0}), ([0, "wed"], {0, 2})],
)
def test_days_parse(spec: object, days: set[int]) -> None:
    assert parse_days(spec) == frozenset(days)


@pytest.mark.parametrize("spec", ["someday", [], [7], "mon-xyz"])
def test_bad_days_are_refused(spec: object) -> None:
    with pytest.raises(ValueError):
        parse_days(spec)
