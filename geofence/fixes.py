"""Location fixes and their plausibility checks (pure: no I/O, the caller passes ``at``).

A fix is untrusted input from a phone. ``check_fix`` says why a fix cannot be used at all (it is then
rejected); a fix that is merely too imprecise for a transition is still accepted and only updates the
device's last-seen time (the presence policy decides that, per zone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated

import msgspec

EARTH_RADIUS_M = 6_371_008.8
ABSURD_ACCURACY_M = 5_000.0  # beyond this a fix says nothing about a shop-sized zone


class LocationFix(msgspec.Struct, frozen=True, gc=False):
    """One position report of one device. ``recorded_at`` is the fix time (tz-aware), not arrival.

    A msgspec ``Struct`` rather than a dataclass so that the JSON decoder of ``POST /v1/locations``
    builds fixes directly (a frozen dataclass's ``__init__`` cost ~1 us per fix, as much as decoding the
    JSON). The length bounds are the wire format's: the decoder enforces them, ``check_fix`` re-checks
    what in-process callers build."""

    device_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    lat: float
    lng: float
    accuracy_m: float
    recorded_at: datetime
    speed_mps: float | None = None
    heading_deg: float | None = None
    client_fix_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None


@dataclass(frozen=True, slots=True)
class FixLimits:
    """Acceptance window for fixes: clock skew tolerated in the future, maximum age in the past."""

    clock_skew: timedelta = timedelta(seconds=120)
    max_age: timedelta = timedelta(hours=24)
    max_accuracy_m: float = ABSURD_ACCURACY_M


def check_fix(fix: LocationFix, *, at: datetime, limits: FixLimits) -> str | None:
    """Return the reason a fix is unusable, or ``None`` when it may be processed.

    Parameters
    ----------
    fix : the fix to check.
    at : tz-aware "now" of the receiving adapter.
    limits : the acceptance window.

    Returns
    -------
    A short machine-readable reason (``lat_out_of_range``, ``not_finite``, ``accuracy_invalid``,
    ``accuracy_absurd``, ``recorded_at_naive``, ``recorded_at_in_future``, ``recorded_at_too_old``,
    ``speed_invalid``, ``heading_invalid``, ``device_id_invalid``) or ``None``.
    """
    return _problem(fix, at - limits.max_age, at + limits.clock_skew, limits.max_accuracy_m)


def _problem(fix: LocationFix, earliest: datetime, latest: datetime, max_accuracy_m: float) -> str | None:
    if not fix.device_id or len(fix.device_id) > 128:
        return "device_id_invalid"
    lat, lng, acc = fix.lat, fix.lng, fix.accuracy_m
    if not (math.isfinite(lat) and math.isfinite(lng) and math.isfinite(acc)):
        return "not_finite"
    if not -90.0 <= lat <= 90.0:
        return "lat_out_of_range"
    if not -180.0 <= lng <= 180.0:
        return "lng_out_of_range"
    if acc <= 0.0:
        return "accuracy_invalid"
    if acc > max_accuracy_m:
        return "accuracy_absurd"
    recorded_at = fix.recorded_at
    if recorded_at.tzinfo is None or recorded_at.utcoffset() is None:
        return "recorded_at_naive"
    if recorded_at > latest:
        return "recorded_at_in_future"
    if recorded_at < earliest:
        return "recorded_at_too_old"
    speed = fix.speed_mps
    if speed is not None and not (math.isfinite(speed) and 0.0 <= speed <= 400.0):
        return "speed_invalid"
    heading = fix.heading_deg
    if heading is not None and not (math.isfinite(heading) and 0.0 <= heading <= 360.0):
        return "heading_invalid"
    return None


def fix_problem(fix: LocationFix, earliest: datetime, latest: datetime, max_accuracy_m: float) -> str | None:
    """``check_fix`` for the hot path: the window is precomputed (``at - max_age``, ``at + clock_skew``).

    The common, valid fix passes with a handful of comparisons (NaN fails every comparison, so it
    falls through to ``check_fix`` for its precise reason).
    """
    lat, lng, acc = fix.lat, fix.lng, fix.accuracy_m
    if -90.0 <= lat <= 90.0 and -180.0 <= lng <= 180.0 and 0.0 < acc <= max_accuracy_m:
        t = fix.recorded_at
        if t.tzinfo is None:
            return "recorded_at_naive"
        if t > latest:
            return "recorded_at_in_future"
        if t < earliest:
            return "recorded_at_too_old"
        device_id = fix.device_id
        if not device_id or len(device_id) > 128:
            return "device_id_invalid"
        if fix.speed_mps is None and fix.heading_deg is None:
            return None
    return _problem(fix, earliest, latest, max_accuracy_m)


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance in metres between two (lat, lng) points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp = p2 - p1
    dl = math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def implied_speed_mps(
    lat1: float, lng1: float, acc1_m: float, at1: datetime, fix: LocationFix
) -> float:
    """Lowest speed consistent with two fixes, their accuracy discs taken into account.

    The two discs may overlap (speed 0); a zero time gap with distinct discs is infinitely fast.
    """
    gap_m = distance_m(lat1, lng1, fix.lat, fix.lng) - acc1_m - fix.accuracy_m
    if gap_m <= 0.0:
        return 0.0
    dt_s = (fix.recorded_at - at1).total_seconds()
    if dt_s <= 0.0:
        return math.inf
    return gap_m / dt_s
