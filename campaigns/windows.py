"""Weekly wall-clock windows in a time zone, as instants: is it open at ``at``, when does it next open.

Windows are kept as local wall-clock times plus an IANA zone and converted per calendar day with
``zoneinfo``, so a 08:30 window opens at 08:30 local on both sides of a DST change (07:30Z in winter,
06:30Z in summer for Europe/Paris). A window whose end is not after its start crosses midnight and
belongs to the day it opens on. Local times that do not exist (the spring-forward gap) resolve forward
by the gap, ambiguous ones (the autumn repeat) to their first occurrence (``fold=0``).

The core question of the send decision is the earliest instant at which several schedules (store
window, legal hours, quiet hours) are all open: that instant is always ``at`` itself or the opening of
one of them, so ``next_common_opening`` only has to test those candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Protocol
from zoneinfo import ZoneInfo

MAX_HORIZON = timedelta(days=15)
_ONE_DAY = timedelta(days=1)


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True)
class Span:
    """One weekly opening: ``days`` (0=Monday) from ``start`` to ``end`` local (end <= start: crosses
    midnight; a start equal to the end means the whole 24 hours)."""

    days: frozenset[int]
    start: time
    end: time


class Schedule(Protocol):
    """Something open over some instants: what the send decision intersects."""

    @property
    def name(self) -> str: ...  # read-only: frozen schedules satisfy it

    def is_open(self, at: datetime) -> bool: ...

    def openings(self, after: datetime, until: datetime) -> Iterable[datetime]: ...


def _local_instant(day: date, wall: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of a wall-clock time on a day.

    In the spring-forward gap zoneinfo applies the pre-transition offset, which lands after the gap
    (02:30 -> 03:30 local on the last Sunday of March in Paris): the first real instant after it.
    """
    return datetime.combine(day, wall, tzinfo=tz).astimezone(UTC)


@dataclass(frozen=True, eq=False)  # identity hash: schedules are cached and reused, hashing stays cheap
class WeeklySchedule:
    """Weekly spans in a zone, minus closed days (e.g. public holidays), as a ``Schedule``.

    ``closed(day)`` closes every span that *opens* on that local day.
    """

    name: str
    tz_name: str
    spans: tuple[Span, ...]
    closed: Callable[[date], bool] | None = None

    @property
    def tz(self) -> ZoneInfo:
        return zone(self.tz_name)

    def _day_open(self, day: date) -> bool:
        return self.closed is None or not self.closed(day)

    def intervals(self, first_day: date, last_day: date) -> Iterator[tuple[datetime, datetime]]:
        """UTC [open, close) intervals of spans opening between two local days (inclusive)."""
        day = first_day
        while day <= last_day:
            yield from _day_intervals(self, day)
            day += timedelta(days=1)

    def is_open(self, at: datetime) -> bool:
        local_day = at.astimezone(self.tz).date()
        for day in (local_day - _ONE_DAY, local_day):  # a span crossing midnight opened the day before
            for opens, closes in _day_intervals(self, day):
                if opens <= at < closes:
                    return True
        return False

    def openings(self, after: datetime, until: datetime) -> Iterator[datetime]:
        tz = self.tz
        first = after.astimezone(tz).date() - timedelta(days=1)
        last = until.astimezone(tz).date()
        for opens, _ in self.intervals(first, last):
            if after < opens <= until:
                yield opens


@lru_cache(maxsize=65536)
def _day_intervals(schedule: WeeklySchedule, day: date) -> tuple[tuple[datetime, datetime], ...]:
    """The UTC intervals of the spans opening on one local day (cached: the decision's hot path)."""
    if not schedule._day_open(day):
        return ()
    tz = schedule.tz
    found = []
    for span in schedule.spans:
        if day.weekday() not in span.days:
            continue
        opens = _local_instant(day, span.start, tz)
        end_day = day + timedelta(days=1) if span.end <= span.start else day
        closes = _local_instant(end_day, span.end, tz)
        if closes > opens:
            found.append((opens, closes))
    return tuple(found)


@dataclass(frozen=True, eq=False)
class AllOf:
    """Open only where every member schedule is open (e.g. a rule checked in every candidate zone)."""

    name: str
    members: tuple[Schedule, ...]

    def is_open(self, at: datetime) -> bool:
        return all(m.is_open(at) for m in self.members)

    def openings(self, after: datetime, until: datetime) -> Iterator[datetime]:
        for member in self.members:
            yield from member.openings(after, until)


ALWAYS_SPAN = Span(frozenset(range(7)), time(0, 0), time(0, 0))


def weekly(
    name: str, tz_name: str, spans: Iterable[Span], closed: Callable[[date], bool] | None = None
) -> WeeklySchedule:
    return WeeklySchedule(name=name, tz_name=tz_name, spans=tuple(spans), closed=closed)


def quiet_period(name: str, tz_name: str, start: time, end: time) -> WeeklySchedule:
    """Closed every day from ``start`` to ``end`` (e.g. 21:00-08:00): open from ``end`` to ``start``."""
    return weekly(name, tz_name, [Span(frozenset(range(7)), end, start)])


def closed_gates(schedules: Sequence[Schedule], at: datetime) -> list[str]:
    """Names of the schedules that are closed at ``at`` (the reason of a deferral)."""
    return [s.name for s in schedules if not s.is_open(at)]


def next_common_opening(
    schedules: Sequence[Schedule], at: datetime, *, within: timedelta = MAX_HORIZON
) -> datetime | None:
    """Earliest instant ``>= at`` (and ``<= at + within``) at which every schedule is open, or None.

    Parameters
    ----------
    schedules : the gates to intersect; an empty sequence is always open.
    at : tz-aware instant to start from.
    within : how far to look ahead (bounded: a rule closed for ever must not loop).

    Notes
    -----
    The intersection of unions of intervals opens either at ``at`` or at the opening of one member;
    so only those candidates are tested, in order.
    """
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    if all(s.is_open(at) for s in schedules):
        return at
    until = at + within
    candidates = sorted({t for s in schedules for t in s.openings(at, until)})
    for candidate in candidates:
        if all(s.is_open(candidate) for s in schedules):
            return candidate
    return None
