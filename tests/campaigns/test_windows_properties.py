"""Properties of window intersection (hypothesis): the next common opening is open in every schedule,
and nothing earlier (at minute resolution) was."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.model import parse_hhmm
from campaigns.windows import Span, next_common_opening, weekly

ZONES = ["Europe/Paris", "America/New_York", "Pacific/Honolulu", "Asia/Kolkata", "UTC"]
times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
spans = st.builds(Span, st.frozensets(st.integers(0, 6), min_size=1), times, times)
schedules = st.builds(
    lambda name, tz, s: weekly(name, tz, s),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(ZONES),
    st.lists(spans, min_size=1, max_size=3),
)
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=UTC)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(schedules, min_size=1, max_size=3), instants)
def test_next_common_opening_is_the_first_open_minute(gates: list, at: datetime) -> None:
    within = timedelta(days=2)
    found = next_common_opening(gates, at, within=within)
    end = found if found is not None else at + within
    probe = at
    while probe < end:  # nothing before the answer is open everywhere
        assert not all(g.is_open(probe) for g in gates), probe
        probe += timedelta(minutes=15)
    if found is not None:
        assert at <= found <= at + within
        assert all(g.is_open(found) for g in gates)


@given(st.integers(0, 23), st.integers(0, 59))
def test_hhmm_round_trips(hour: int, minute: int) -> None:
    assert parse_hhmm(f"{hour:02d}:{minute:02d}") == time(hour, minute)


@given(st.text(max_size=8))
def test_hhmm_never_crashes_on_text(text: str) -> None:
    try:
        parse_hhmm(text)
    except ValueError:
        pass
