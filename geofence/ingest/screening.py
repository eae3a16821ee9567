"""Steps 1-2 of the ingest: check each fix, group the valid ones by device, and screen each device's fixes
in time order against its track (duplicates, late fixes, implausible jumps).

The device tracks (``geofence.tracks``: last fix time and position, recent client fix ids) are the
process's cache that makes these checks cheap; ``screen`` moves each track on to its device's last kept
fix and returns what it was (``Undo``), for the speed estimate and in case the batch is not committed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime

from geofence.fixes import FixLimits, LocationFix, fix_problem
from geofence.ingest.results import DUPLICATE_RESULT, FixResult, rejected
from geofence.tracks import Track, Tracks

JUMPS_BEFORE_REANCHOR = 3
Undo = tuple[float, float, float, datetime, tuple[str, ...]] | None  # a track before the batch (None: new)


def fast_speed_mps(lat1: float, lng1: float, acc1_m: float, at1: datetime, fix: LocationFix) -> float:
    """``fixes.implied_speed_mps`` with an equirectangular distance (plenty for a plausibility check)."""
    dy = (fix.lat - lat1) * 111_195.0
    dx = (fix.lng - lng1) * 111_195.0 * math.cos(math.radians(lat1))
    gap_m = math.sqrt(dx * dx + dy * dy) - acc1_m - fix.accuracy_m
    if gap_m <= 0.0:
        return 0.0
    dt_s = (fix.recorded_at - at1).total_seconds()
    return gap_m / dt_s if dt_s > 0 else math.inf


def check_and_group(
    fixes: Sequence[LocationFix], positions: Iterable[int], *, limits: FixLimits, at: datetime,
    refused: Mapping[int, str] | None, results: list[FixResult],
) -> dict[str, list[int]]:
    """The valid fixes at ``positions``, by device (batch order); the others' results are set here."""
    by_device: dict[str, list[int]] = {}
    earliest, latest = at - limits.max_age, at + limits.clock_skew
    max_accuracy_m = limits.max_accuracy_m
    for i in positions:
        fix = fixes[i]
        reason = refused.get(i) if refused else None
        if reason is None:
            reason = fix_problem(fix, earliest, latest, max_accuracy_m)
        if reason is not None:
            results[i] = rejected(reason)
            continue
        same_device = by_device.get(fix.device_id)
        if same_device is None:
            by_device[fix.device_id] = [i]
        else:
            same_device.append(i)
    return by_device


def screen(
    fixes: Sequence[LocationFix], by_device: dict[str, list[int]], results: list[FixResult], *,
    tracks: Tracks, max_speed_mps: float, added: Callable[[int], None],
) -> tuple[dict[str, list[int]], dict[str, Undo]]:
    """Per device, in fix-time order: drop duplicates (same client fix id, or same fix time) and late
    fixes (older than the last one processed), and ignore implausible jumps (after two in a row the third
    fix re-anchors the device: it really did move). Returns the kept fixes by device (time order) and
    each device's track before the batch; ``added(slot)`` is told of every new track."""
    kept: dict[str, list[int]] = {}
    undo: dict[str, Undo] = {}
    for device_id, positions in by_device.items():
        slot = tracks.slot_of.get(device_id)
        track = None if slot is None else tracks.row(slot)
        if track is not None and len(positions) == 1 and track.jumps == 0:
            # the common case, spelled out: one fix of a known device, newer than its last one
            fix = fixes[positions[0]]
            t, pat = fix.recorded_at, track.last_fix_at
            if t > pat and fast_speed_mps(track.lat, track.lng, track.accuracy_m, pat, fix) <= max_speed_mps:
                kept[device_id] = positions
                undo[device_id] = track[1:4] + (pat, track.fix_ids)
                tracks.move(slot, t, fix.lat, fix.lng, fix.accuracy_m, fix.client_fix_id)  # type: ignore[arg-type]
                continue
        if track is None and len(positions) == 1:
            kept[device_id] = positions  # the first fix of a device this process sees
            f = fixes[positions[0]]
            added(tracks.add(device_id, f.recorded_at, f.lat, f.lng, f.accuracy_m, f.client_fix_id))
            undo[device_id] = None
            continue
        if len(positions) > 1:
            positions.sort(key=lambda i: fixes[i].recorded_at)
        survivors, jumps = _screen_device(fixes, positions, track, results, max_speed_mps)
        if slot is not None:
            tracks.jumps[slot] = jumps
        if not survivors:
            continue
        kept[device_id] = survivors
        last = fixes[survivors[-1]]
        ids = tuple(cid for i in survivors if (cid := fixes[i].client_fix_id) is not None)
        if slot is None or track is None:
            added(tracks.add(device_id, last.recorded_at, last.lat, last.lng, last.accuracy_m, ids))
            undo[device_id] = None
        else:
            undo[device_id] = (*track[1:4], track.last_fix_at, track.fix_ids)
            tracks.move(slot, last.recorded_at, last.lat, last.lng, last.accuracy_m, ids)
    return kept, undo


def _screen_device(
    fixes: Sequence[LocationFix], positions: list[int], track: Track | None, results: list[FixResult],
    max_speed_mps: float,
) -> tuple[list[int], int]:
    """One device's fixes (time order) against its track (None: new): the positions kept, and the
    implausible jumps in a row after them."""
    last_at: datetime | None
    pat: datetime | None
    remembered: tuple[str, ...]
    if track is not None:
        last_at = pat = track.last_fix_at
        plat, plng, pacc = track.lat, track.lng, track.accuracy_m
        jumps = track.jumps
        remembered = track.fix_ids
    else:
        last_at = pat = None
        plat = plng = pacc = 0.0
        jumps = 0
        remembered = ()
    batch_ids: set[str] = set()
    survivors: list[int] = []
    for i in positions:
        fix = fixes[i]
        t = fix.recorded_at
        fid = fix.client_fix_id
        if fid is not None and fid in batch_ids:  # same client fix id twice in one batch
            results[i] = DUPLICATE_RESULT
            continue
        if last_at is not None and t <= last_at:
            # a retried fix is never newer than what was processed: only then look at the ids
            # remembered from earlier batches (an id reused with a newer time is a new fix)
            repeated = t == last_at or (fid is not None and fid in remembered)
            results[i] = DUPLICATE_RESULT if repeated else rejected("out_of_order")
            if repeated and fid is not None:
                batch_ids.add(fid)  # a retried batch: its later fixes with this id are repeats too
            continue
        if pat is not None and jumps < JUMPS_BEFORE_REANCHOR - 1:
            if fast_speed_mps(plat, plng, pacc, pat, fix) > max_speed_mps:
                jumps += 1
                results[i] = rejected("implausible_jump")
                continue
        jumps = 0
        survivors.append(i)
        last_at = pat = t
        plat, plng, pacc = fix.lat, fix.lng, fix.accuracy_m
        if fid is not None and len(positions) > 1:
            batch_ids.add(fid)
    return survivors, jumps


def restore(tracks: Tracks, undo: dict[str, Undo]) -> None:
    """Nothing was committed: the tracks go back to what they were before the batch."""
    for device_id, old in undo.items():
        if old is None:
            if device_id in tracks:
                tracks.remove(device_id)
        else:
            lat, lng, accuracy_m, at, fix_ids = old
            tracks.move(tracks.slot_of[device_id], at, lat, lng, accuracy_m, fix_ids)
