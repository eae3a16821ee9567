"""The accelerated lane's screen: the common fix, checked for the whole batch at once in columns.

A valid fix that is the only one of its device in the batch, newer than the device's last fix and at a
plausible speed from it is accepted here and moves its device's track; every other fix takes the
reference screen (``geofence.ingest.screening``), which gives its precise result. The equivalence test
``test_the_fast_lane_gives_the_results_events_rows_and_tracks_of_the_generic_path`` holds the two equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter, sub
from typing import Any

import numpy as np
from msgspec.structs import astuple

from geofence.fixes import FixLimits, LocationFix
from geofence.ingest.screening import Undo
from geofence.tracks import Tracks, at_seconds, fix_ids_of

_TZINFO = attrgetter("tzinfo")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECONDS = timedelta.total_seconds  # of ``time - _EPOCH``: ``datetime.timestamp`` without its
# ``utcoffset`` call when the time is in UTC (the same tzinfo object as the epoch's): 70 ns, not 170


class Lane:
    """The fixes of one batch accepted by ``fast_screen`` (one per device, a *row* each), and the rest
    (``others``: positions in the batch, for the reference screen)."""

    __slots__ = ("acc", "devices", "lat", "lng", "old", "others", "positions", "pshift", "shift", "slots",
                 "stamps", "tracks")

    def __init__(
        self, tracks: Tracks, positions: list[int], devices: list[str], slots: np.ndarray, others: list[int],
        columns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        old: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    ) -> None:
        self.tracks, self.positions, self.devices, self.slots = tracks, positions, devices, slots
        self.others = others
        self.stamps, self.lat, self.lng, self.acc = columns  # the accepted fixes' times (POSIX seconds),
        # positions and accuracies
        self.old = old  # the devices' tracks before the batch: lat, lng, accuracy, last fix, fix ids
        self.shift = np.full(len(positions), np.inf)  # each fix's distance from its disc's centre
        self.pshift = np.full(len(positions), np.inf)  # and from its presence disc's

    def before(self, row: int) -> Undo:
        """A device's track before the batch, as ``screening.screen``'s undo has it."""
        lat, lng, acc, at, ids = self.old
        return (float(lat[row]), float(lng[row]), float(acc[row]), at_seconds(float(at[row])),
                fix_ids_of(ids[row]))

    def restore(self) -> None:
        t, s = self.tracks, self.slots
        t.lat[s], t.lng[s], t.acc[s], t.at_s[s], t.fix_ids[s] = self.old


def _columns(fixes: Sequence[LocationFix]) -> list[tuple[Any, ...]]:
    """Each field of ``LocationFix`` as a tuple over the fixes: ``astuple`` (C) and a transpose, ~10 us
    less a 100-fix batch than a ``map`` of a getter per field. A fix of another type (an in-process
    caller's) raises ``TypeError``: the batch then takes the generic path."""
    if set(map(type, fixes)) != {LocationFix}:  # a subclass may hold its fields in another order
        raise TypeError("not LocationFix")
    return list(zip(*map(astuple, fixes), strict=True))


def _positions_of_none(values: Sequence[object]) -> list[int]:
    return [i for i, v in enumerate(values) if v is None] if None in values else []


def _positions_of_not_none(values: Sequence[object]) -> list[int]:
    return [] if values.count(None) == len(values) else [i for i, v in enumerate(values) if v is not None]


def fast_screen(
    fixes: Sequence[LocationFix], at: datetime, refused: Mapping[int, str] | None, *, tracks: Tracks,
    limits: FixLimits, max_speed_mps: float,
) -> Lane | None:
    """The fixes accepted at once, vectorised (``screening.fast_speed_mps``'s speed). Bounds are kept a
    millisecond inside the window so that float times never decide a borderline fix.

    None when the batch cannot be read as columns (odd types from an in-process caller)."""
    n = len(fixes)
    if n == 0:
        return None
    try:
        # the fields as columns, in one pass over the fixes (``LocationFix``'s field order)
        devs, lats, lngs, accs, times, speeds, headings, fix_ids = _columns(fixes)
        slots = np.fromiter(map(tracks.slot_of.get, devs, repeat(-1)), np.int64, n)
        lat = np.array(lats, np.float64)
        lng = np.array(lngs, np.float64)
        acc = np.array(accs, np.float64)
        ok = np.fromiter(map(len, devs), np.int64, n) <= 128
        ok &= (lat >= -90.0) & (lat <= 90.0) & (lng >= -180.0) & (lng <= 180.0)
        ok &= (acc > 0.0) & (acc <= limits.max_accuracy_m)
        ok &= slots >= 0  # devices this process has not seen: generic path
        naive = _positions_of_none(list(map(_TZINFO, times)))
        for i in naive:
            ok[i] = False  # naive times: generic path (``recorded_at_naive``)
        for column in (speeds, headings):
            for i in _positions_of_not_none(column):
                ok[i] = False  # speed and heading get their range checks there
        if refused:
            ok[list(refused)] = False
        if len(set(devs)) != n:
            seen: set[str] = set()
            twice = {d for d in devs if d in seen or seen.add(d)}  # type: ignore[func-returns-value]
            ok &= np.fromiter((d not in twice for d in devs), bool, n)
        if "" in devs:
            ok &= np.fromiter(map(bool, devs), bool, n)
        aware = times if not naive else [_EPOCH if t.tzinfo is None else t for t in times]
        ts = np.fromiter(map(_SECONDS, map(sub, aware, repeat(_EPOCH))), np.float64, n)
    except (TypeError, ValueError, OverflowError, AttributeError, IndexError):
        return None
    s = np.where(ok, slots, 0)  # a row of the generic path reads slot 0 (there is one: capacity)
    pts, plat, plng, pacc = tracks.at_s[s], tracks.lat[s], tracks.lng[s], tracks.acc[s]
    window = at - limits.max_age, at + limits.clock_skew
    ok &= (ts > window[0].timestamp() + 1e-3) & (ts < window[1].timestamp() - 1e-3)
    ok &= (tracks.jumps[s] == 0) & (ts > pts)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        dy = (lat - plat) * 111_195.0
        dx = (lng - plng) * (111_195.0 * np.cos(np.radians(plat)))
        gap = np.sqrt(dx * dx + dy * dy) - pacc - acc
        speed = np.where(gap <= 0.0, 0.0, gap / (ts - pts))
    ok &= speed <= max_speed_mps
    picked = np.flatnonzero(ok)
    positions = picked.tolist()
    ps = slots[picked]
    old = (plat[picked], plng[picked], pacc[picked], pts[picked], tracks.fix_ids[ps])
    new = (ts[picked], lat[picked], lng[picked], acc[picked])
    tracks.at_s[ps], tracks.lat[ps], tracks.lng[ps], tracks.acc[ps] = new
    tracks.fix_ids[ps] = np.array(fix_ids, dtype=object)[picked]  # one id, bare
    others = np.flatnonzero(~ok).tolist()
    return Lane(tracks, positions, [devs[i] for i in positions], ps, others, new, old)
