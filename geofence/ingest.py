"""Use case: a batch of fixes -> per-fix results, presence changes and zone events (no FastAPI, no SDK).

Order of work for one batch:

1. the *fast lane* (``Ingestor._fast_lane``), vectorised over the batch: a valid fix that is the only one
   of its device in the batch, newer than the device's last fix and at a plausible speed from it is
   accepted at once; every other fix takes steps 2-3, which give its precise result;
2. check each remaining fix (``fixes.check_fix``) and group by device, sorted by fix time;
3. per device: drop duplicates (same client fix id, or same fix time) and late fixes (older than the
   last one processed), and ignore implausible jumps (counted; after two in a row the third fix
   re-anchors the device: it really did move);
4. a fast-lane fix in its device's *disc* (closer to the point last matched than that point's clearance:
   in the same zones) or *presence disc* (its steady zones still hold it, and it is too shallow for any
   other zone) is tested in columns against the device's steady summary, and most are settled there
   (``_steady_rows``: no match, no read, no step); one vectorised ``ZoneIndex.match_many`` over the
   others, and new discs for the fast-lane fixes matched (``_new_discs``, ``_presence_discs``);
5. the busy devices' stored presences (``PresenceStore.load``: from the process's cache, kept current by
   the database's change feed; the database is the truth, see ``geofence.service.wiring.geofence``): a
   device whose fixes are all in exactly the zones it is steadily inside of is not stepped
   (``_summary``); the others get the pure ``presence.step`` for every (fix, candidate zone) but the
   zone hits too shallow to start an enter (``presence.leaves_outside_alone``); one optimistic write of
   the presences that changed and of the heads, with the events, in one transaction.

The device tracks (last fix time and position, recent client fix ids) are an in-process cache: they make
the duplicate / late / jump checks cheap. Each device's head carries its last processed fix so a late fix
never rewinds a presence even when the cache is cold or another worker saw the newer fix — to within one
``HEARTBEAT``: a head whose only change is a newer last fix is re-written once the stored one is a
heartbeat old, not on every fix (docs/presence.md says what that costs).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import repeat
from operator import attrgetter, sub
from typing import NamedTuple, Protocol

import numpy as np

from geofence.events import ZoneEvent
from geofence.fixes import EARTH_RADIUS_M, FixLimits, LocationFix, distance_m, fix_problem
from geofence.policy import FencePolicy
from geofence.presence import (
    INSIDE_STATES,
    Presence,
    PresenceState,
    adopt,
    close,
    leaves_outside_alone,
    only_seen_later,
    stays_inside,
    step,
    sweep,
)
from geofence.store import ConflictError, StoredDevice, UnitOfWork
from geofence.tracks import Tracks, at_seconds, fix_ids_of
from zones.clearance import AREA_SLACK
from zones.index import ZoneMatches
from zones.model import Zone

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"
JUMPS_BEFORE_REANCHOR = 3
MAX_CONFLICT_RETRIES = 3
CENTRE_INSIDE = -1e-3  # a signed distance standing for "the index found the centre inside"
# A stored presence whose only change is a newer ``last_fix_at`` is re-written only once the stored one is
# this old (write coalescing: a device standing in 10 zones would otherwise re-write 10 rows per fix).
# Far below ``silence_exit_after``; see docs/presence.md for what it costs.
HEARTBEAT = timedelta(seconds=60)


class ZoneLookup(Protocol):
    """What ingest needs of ``zones.ZoneIndex``."""

    def match_many(self, lats: np.ndarray, lngs: np.ndarray) -> ZoneMatches: ...

    def signed_distance_m(
        self, zone_id: str, lat: float, lng: float, inside: bool | None = None
    ) -> float: ...

    def clearance_m(self, lats: np.ndarray, lngs: np.ndarray) -> np.ndarray: ...

    def presence_bounds(
        self, lats: np.ndarray, lngs: np.ndarray, inside: Sequence[Sequence[str]],
        steady: Sequence[Collection[str] | None],
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def zones(self) -> Iterator[Zone]: ...

    def __contains__(self, zone_id: object) -> bool: ...

    generation: int  # moves on with every change of the zones


@dataclass(frozen=True, slots=True)
class FixResult:
    status: str  # accepted | duplicate | rejected
    reason: str | None = None


OK = FixResult(ACCEPTED)
DUPLICATE_RESULT = FixResult(DUPLICATE)
_REJECTIONS: dict[str, FixResult] = {}


def _rejected(reason: str) -> FixResult:
    result = _REJECTIONS.get(reason)
    if result is None:
        result = FixResult(REJECTED, reason)
        if len(_REJECTIONS) < 1000:  # decoder messages vary; keep the cache bounded
            _REJECTIONS[reason] = result
    return result


def _fast_speed_mps(lat1: float, lng1: float, acc1_m: float, at1: datetime, fix: LocationFix) -> float:
    """``fixes.implied_speed_mps`` with an equirectangular distance (plenty for a plausibility check)."""
    dy = (fix.lat - lat1) * 111_195.0
    dx = (fix.lng - lng1) * 111_195.0 * math.cos(math.radians(lat1))
    gap_m = math.sqrt(dx * dx + dy * dy) - acc1_m - fix.accuracy_m
    if gap_m <= 0.0:
        return 0.0
    dt_s = (fix.recorded_at - at1).total_seconds()
    return gap_m / dt_s if dt_s > 0 else math.inf
Changes = tuple[list[Presence], list[ZoneEvent]]
Undo = tuple[float, float, float, datetime, tuple[str, ...]] | None  # a track before the batch (None: new)


class _Summary(NamedTuple):
    """A stored device's presences for the steady tests (see ``Ingestor._summary``)."""

    n_steady: int  # steady presences, and the sums of their zone-id hashes
    h1: float
    h2: float
    until: datetime  # the first dwell due among them
    until_s: float  # the same as a POSIX timestamp
    steady: frozenset[str]  # zones (indexed) the device is inside of with no dwell due yet, or dwelling in
    other: tuple[str, ...]  # zones of its other presences
    ok: bool  # no other presence, few enough zones for exact sums, and a stored head: may be skipped


class _Hits:
    """One batch's index matches, by row of the kept fixes (``order``): per-row counts and hash sums for
    the steady test, and the zone ids of a row only when a device has to be stepped."""

    def __init__(
        self, found: ZoneMatches, n: int, hashes: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    ) -> None:
        self.found, self.n, self._hashes = found, n, hashes
        self.counts = np.bincount(found.positions, minlength=n)
        self._sums: tuple[np.ndarray, np.ndarray] | None = None
        self._lists: tuple[list[int], list[float], list[float]] | None = None
        self._sorted: tuple[list[str], list[int]] | None = None

    def sums(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the two sums of the hashes of the zones that contain the fix."""
        if self._sums is None:
            h1, h2 = self._hashes(self.found.ids)
            pos, zones = self.found.positions, self.found.zones
            self._sums = (
                np.bincount(pos, weights=h1[zones], minlength=self.n),
                np.bincount(pos, weights=h2[zones], minlength=self.n),
            )
        return self._sums

    def lists(self) -> tuple[list[int], list[float], list[float]]:
        if self._lists is None:
            s1, s2 = self.sums()
            self._lists = (self.counts.tolist(), s1.tolist(), s2.tolist())
        return self._lists

    def ids_by_fix(self, rows: list[tuple[int, int]]) -> dict[int, list[str]]:
        """Fix position -> ids of the zones that contain its centre, for these (row, position) pairs."""
        out: dict[int, list[str]] = {}
        for j, i in rows:
            found = self.ids_of(j)
            if found:
                out[i] = found
        return out

    def ids_of(self, row: int) -> list[str]:
        """Ids of the zones that contain one row's fix."""
        if self._sorted is None:
            by_row = np.argsort(self.found.positions, kind="stable")
            ends = np.cumsum(self.counts).tolist()
            self._sorted = (self.found.ids[self.found.zones[by_row]].tolist(), ends)
        ids, ends = self._sorted
        return ids[ends[row - 1] if row else 0 : ends[row]]


def _zone_hash(zone_id: str) -> tuple[float, float]:
    """Two independent 44-bit hashes of a zone id, as floats: sums of up to ``MAX_SUMMED_ZONES`` of them
    are exact in float64 whatever the order of addition (numpy's per-fix sums, Python's per device)."""
    h = _ZONE_HASHES.get(zone_id)
    if h is None:
        v = int.from_bytes(hashlib.blake2b(zone_id.encode(), digest_size=11).digest(), "big")
        h = _ZONE_HASHES[zone_id] = (float(v & _MASK44), float((v >> 44) & _MASK44))
    return h


_MASK44 = (1 << 44) - 1
MAX_SUMMED_ZONES = 500  # 500 * 2**44 < 2**53
_ZONE_HASHES: dict[str, tuple[float, float]] = {}
_NEVER = datetime.max.replace(tzinfo=UTC)
_INSIDE, _DWELLING = PresenceState.INSIDE, PresenceState.DWELLING


@dataclass
class IngestOutcome:
    results: list[FixResult]
    events: list[ZoneEvent]
    counts: dict[tuple[str, str], int]  # (status, reason) -> number, for metrics


class _Lane:
    """The fixes of one batch accepted by ``Ingestor._fast_lane`` (one per device, a *row* each), and the
    rest (``others``: positions in the batch)."""

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
        """A device's track before the batch, as ``Ingestor._screen``'s undo has it."""
        lat, lng, acc, at, ids = self.old
        return (float(lat[row]), float(lng[row]), float(acc[row]), at_seconds(float(at[row])),
                fix_ids_of(ids[row]))

    def restore(self) -> None:
        t, s = self.tracks, self.slots
        t.lat[s], t.lng[s], t.acc[s], t.at_s[s], t.fix_ids[s] = self.old


def _positions_of_none(values: list[object]) -> list[int]:
    return [i for i, v in enumerate(values) if v is None] if None in values else []


def _positions_of_not_none(values: list[object]) -> list[int]:
    return [] if values.count(None) == len(values) else [i for i, v in enumerate(values) if v is not None]


def _metres(lat1: np.ndarray, lng1: np.ndarray, lat2: np.ndarray, lng2: np.ndarray) -> np.ndarray:
    """Great-circle distances, as ``zones`` measures them (haversine, ``fixes.EARTH_RADIUS_M``)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lng2 - lng1) / 2) ** 2
    metres: np.ndarray = 2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(a)))
    return metres


_DEVICE, _RECORDED_AT, _TZINFO = attrgetter("device_id"), attrgetter("recorded_at"), attrgetter("tzinfo")
_LAT, _LNG, _ACC = attrgetter("lat"), attrgetter("lng"), attrgetter("accuracy_m")
_SPEED, _HEADING, _FIX_ID = attrgetter("speed_mps"), attrgetter("heading_deg"), attrgetter("client_fix_id")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SECONDS = timedelta.total_seconds  # of ``time - _EPOCH``: ``datetime.timestamp``, without its
# ``utcoffset`` call when the time is in UTC (the same tzinfo object as the epoch's): 70 ns, not 170


class Ingestor:
    """Holds what outlives a request: the zone index, per-zone policies and the device-track cache."""

    def __init__(
        self,
        index: ZoneLookup,
        *,
        policy: FencePolicy,
        limits: FixLimits,
        zone_policy: Callable[[str], FencePolicy] | None = None,
        heartbeat: timedelta = HEARTBEAT,
    ) -> None:
        self.index = index
        self.heartbeat = heartbeat
        self.policy = policy
        self.limits = limits
        self._zone_policy = zone_policy or (lambda _zone_id: policy)
        self._policies: dict[str, FencePolicy] = {}
        self.tracks = Tracks()
        # devices with an open presence (any worker's, as of the last refresh, plus this process's own)
        self.open_devices: set[str] = set()
        self.fix_store_wanted = False  # True when raw fixes are retained: every batch opens a transaction
        self.skip_steady = True  # off only to check that skipping changes nothing (tests)
        self.fast_lane = True  # likewise for the vectorised screen (``_fast_lane``)
        self.discs = True  # likewise for the discs (``_in_disc``)
        self.steady_skips = 0  # devices not stepped because steady (since start)
        self.column_skips = 0  # of which, settled in columns by their tracks' summaries (``_steady_rows``)
        self.shallow_skips = 0  # of which, with zone hits too shallow to enter besides their steady zones
        self.shallow_column_skips = 0  # of which, settled in columns by their disc's accuracy bound
        self.disc_fixes = 0  # fast-lane fixes in their device's disc or presence disc (not matched)
        self.presence_skips = 0  # steady devices settled by their presence disc alone
        self._policy_epoch = 1  # moved on when a zone's policy may have changed (steady summaries)
        self._disc_generation = -1  # the index generation the discs were measured against
        self._hashed_ids: np.ndarray | None = None
        self._id_hash_arrays: tuple[np.ndarray, np.ndarray] = (np.empty(0), np.empty(0))
        self._versions: dict[str, int] | None = None  # the store's versions that ``tracks.cv`` mirrors
        self._zone_info: dict[str, tuple[float, float, timedelta]] = {}  # ``_info``
        self._ratio_checked, self._ratio_ok = 0, False  # ``_uniform_ratio``, as of this policy epoch

    # -- policies -------------------------------------------------------------------------------
    def policy_for(self, zone_id: str) -> FencePolicy:
        policy = self._policies.get(zone_id)
        if policy is None:
            policy = self._policies[zone_id] = self._zone_policy(zone_id)
        return policy

    def forget_zone(self, zone_id: str) -> None:
        """The zone changed or went away: rebuild its policy on next use."""
        self._policies.pop(zone_id, None)
        self._policy_epoch += 1
        self._zone_info.clear()

    # -- the use case ---------------------------------------------------------------------------
    def ingest(
        self,
        fixes: Sequence[LocationFix],
        *,
        uow_factory: Callable[[], UnitOfWork],
        at: datetime,
        refused: Mapping[int, str] | None = None,
    ) -> IngestOutcome:
        """Process a batch.

        Parameters
        ----------
        fixes : the batch, any order, any devices.
        uow_factory : opens a unit of work (one transaction; called again after a version conflict).
        at : the receiving adapter's "now" (clock-skew and age checks only; presence uses fix time).
        refused : positions the adapter already refused (auth, consent) with their reason.

        Returns
        -------
        Results in the order of ``fixes``, the committed events (in fix-time order per device) and
        counts by (status, reason).
        """
        results: list[FixResult] = [OK] * len(fixes)
        if self.index.generation != self._disc_generation:  # the zones changed: no disc holds
            self.tracks.drop_discs()
            self._zone_info.clear()
            self._ratio_checked = 0
            self._disc_generation = self.index.generation
        lane = self._fast_lane(fixes, at, refused) if self.fast_lane else None
        by_device: dict[str, list[int]] = {}
        limits = self.limits
        earliest, latest = at - limits.max_age, at + limits.clock_skew
        max_accuracy_m = limits.max_accuracy_m
        for i in range(len(fixes)) if lane is None else lane.others:
            fix = fixes[i]
            reason = refused.get(i) if refused else None
            if reason is None:
                reason = fix_problem(fix, earliest, latest, max_accuracy_m)
            if reason is not None:
                results[i] = _rejected(reason)
                continue
            positions = by_device.get(fix.device_id)
            if positions is None:
                by_device[fix.device_id] = [i]
            else:
                positions.append(i)

        kept, undo = self._screen(fixes, by_device, results)
        events: list[ZoneEvent] = []
        try:
            for attempt in range(MAX_CONFLICT_RETRIES + 1):
                if not kept and (lane is None or not lane.positions):
                    break
                try:
                    events = self._apply(fixes, kept, undo, uow_factory, at, lane)
                    break
                except ConflictError:
                    if attempt == MAX_CONFLICT_RETRIES:
                        raise
        except BaseException:
            self._restore(undo)  # nothing was committed: the device tracks go back as they were
            if lane is not None:
                lane.restore()
            raise
        counts: dict[tuple[str, str], int] = {}
        for i in range(len(fixes)) if lane is None else lane.others:
            r = results[i]
            key = (r.status, r.reason or "")
            counts[key] = counts.get(key, 0) + 1
        if lane is not None and lane.positions:
            counts[(ACCEPTED, "")] = counts.get((ACCEPTED, ""), 0) + len(lane.positions)
        return IngestOutcome(results, events, counts)

    def _fast_lane(
        self, fixes: Sequence[LocationFix], at: datetime, refused: Mapping[int, str] | None
    ) -> _Lane | None:
        """The common fix, checked for the whole batch at once: valid, the only fix of its device in the
        batch, newer than the device's last fix and at a plausible speed from it (``_fast_speed_mps``,
        vectorised). Those fixes are accepted and move their device's track here; every other fix takes
        the generic path (``fix_problem``, ``_screen``), which gives its precise result. Bounds are kept
        a millisecond inside the window so that float times never decide a borderline fix.

        None when the batch cannot be read as columns (odd types from an in-process caller)."""
        n = len(fixes)
        if n == 0:
            return None
        tracks = self.tracks
        try:
            devs = list(map(_DEVICE, fixes))
            times = list(map(_RECORDED_AT, fixes))
            slots = np.fromiter(map(tracks.slot_of.get, devs, repeat(-1)), np.int64, n)
            lat = np.fromiter(map(_LAT, fixes), np.float64, n)
            lng = np.fromiter(map(_LNG, fixes), np.float64, n)
            acc = np.fromiter(map(_ACC, fixes), np.float64, n)
            ok = np.fromiter(map(len, devs), np.int64, n) <= 128
            ok &= (lat >= -90.0) & (lat <= 90.0) & (lng >= -180.0) & (lng <= 180.0)
            ok &= (acc > 0.0) & (acc <= self.limits.max_accuracy_m)
            ok &= slots >= 0  # devices this process has not seen: generic path
            naive = _positions_of_none(list(map(_TZINFO, times)))
            for i in naive:
                ok[i] = False  # naive times: generic path (``recorded_at_naive``)
            for getter in (_SPEED, _HEADING):
                for i in _positions_of_not_none(list(map(getter, fixes))):
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
        window = at - self.limits.max_age, at + self.limits.clock_skew
        ok &= (ts > window[0].timestamp() + 1e-3) & (ts < window[1].timestamp() - 1e-3)
        ok &= (tracks.jumps[s] == 0) & (ts > pts)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            dy = (lat - plat) * 111_195.0
            dx = (lng - plng) * (111_195.0 * np.cos(np.radians(plat)))
            gap = np.sqrt(dx * dx + dy * dy) - pacc - acc
            speed = np.where(gap <= 0.0, 0.0, gap / (ts - pts))
        ok &= speed <= self.policy.max_speed_mps
        picked = np.flatnonzero(ok)
        positions = picked.tolist()
        ps = slots[picked]
        old = (plat[picked], plng[picked], pacc[picked], pts[picked], tracks.fix_ids[ps])
        new = (ts[picked], lat[picked], lng[picked], acc[picked])
        tracks.at_s[ps], tracks.lat[ps], tracks.lng[ps], tracks.acc[ps] = new
        tracks.fix_ids[ps] = np.array(list(map(_FIX_ID, fixes)), dtype=object)[picked]  # one id, bare
        others = np.flatnonzero(~ok).tolist()
        return _Lane(tracks, positions, [devs[i] for i in positions], ps, others, new, old)

    def _screen(
        self, fixes: Sequence[LocationFix], by_device: dict[str, list[int]], results: list[FixResult]
    ) -> tuple[dict[str, list[int]], dict[str, Undo]]:
        """Per device, in fix-time order: duplicates, late fixes and implausible jumps.

        The device tracks are moved on to each device's last kept fix here (one pass); ``undo`` holds
        what they were, for the speed estimate and in case the batch cannot be committed.
        """
        kept: dict[str, list[int]] = {}
        undo: dict[str, Undo] = {}
        last_at: datetime | None
        pat: datetime | None
        max_speed = self.policy.max_speed_mps
        tracks = self.tracks
        for device_id, positions in by_device.items():
            slot = tracks.slot_of.get(device_id)
            track = None if slot is None else tracks.row(slot)
            if track is not None and len(positions) == 1 and track.jumps == 0:
                # the common case, spelled out: one fix of a known device, newer than its last one
                i = positions[0]
                fix = fixes[i]
                t = fix.recorded_at
                pat = track.last_fix_at
                if t > pat and _fast_speed_mps(track.lat, track.lng, track.accuracy_m, pat, fix) <= max_speed:
                    kept[device_id] = positions
                    undo[device_id] = track[1:4] + (pat, track.fix_ids)
                    tracks.move(slot, t, fix.lat, fix.lng, fix.accuracy_m, fix.client_fix_id)  # type: ignore[arg-type]
                    continue
            if track is None and len(positions) == 1:
                kept[device_id] = positions  # the first fix of a device this process sees
                f = fixes[positions[0]]
                self._added(tracks.add(device_id, f.recorded_at, f.lat, f.lng, f.accuracy_m, f.client_fix_id))
                undo[device_id] = None
                continue
            if len(positions) > 1:
                positions.sort(key=lambda i: fixes[i].recorded_at)
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
                    results[i] = DUPLICATE_RESULT if repeated else _rejected("out_of_order")
                    if repeated and fid is not None:
                        batch_ids.add(fid)  # a retried batch: its later fixes with this id are repeats too
                    continue
                if pat is not None and jumps < JUMPS_BEFORE_REANCHOR - 1:
                    if _fast_speed_mps(plat, plng, pacc, pat, fix) > max_speed:
                        jumps += 1
                        results[i] = _rejected("implausible_jump")
                        continue
                jumps = 0
                survivors.append(i)
                last_at = pat = t
                plat, plng, pacc = fix.lat, fix.lng, fix.accuracy_m
                if fid is not None and len(positions) > 1:
                    batch_ids.add(fid)
            if slot is not None:
                tracks.jumps[slot] = jumps
            if not survivors:
                continue
            kept[device_id] = survivors
            last = fixes[survivors[-1]]
            ids = tuple(cid for i in survivors if (cid := fixes[i].client_fix_id) is not None)
            if slot is None or track is None:
                self._added(tracks.add(device_id, last.recorded_at, last.lat, last.lng, last.accuracy_m, ids))
                undo[device_id] = None
            else:
                undo[device_id] = (*track[1:4], track.last_fix_at, track.fix_ids)
                tracks.move(slot, last.recorded_at, last.lat, last.lng, last.accuracy_m, ids)
        return kept, undo

    def _added(self, slot: int) -> None:
        """A new track starts with the version of the store's copy, if it has one (see ``_watch``)."""
        if self._versions is not None:
            self.tracks.cv[slot] = self._versions.get(self.tracks.device_ids[slot], -1)  # type: ignore[arg-type]

    def _restore(self, undo: dict[str, Undo]) -> None:
        tracks = self.tracks
        for device_id, old in undo.items():
            if old is None:
                if device_id in tracks:
                    tracks.remove(device_id)
            else:
                lat, lng, accuracy_m, at, fix_ids = old
                tracks.move(tracks.slot_of[device_id], at, lat, lng, accuracy_m, fix_ids)

    def _in_disc(self, lane: _Lane) -> tuple[np.ndarray, np.ndarray]:
        """Per lane row, whether the fix lies in its device's disc (``Tracks``): then it is in exactly the
        zones of the disc's centre, which the track keeps (count and hash sums), and is not matched; and
        whether it lies in its device's presence disc (its steady zones still hold it there: see
        ``_steady_rows``). Sets ``lane.shift`` and ``lane.pshift``: each fix's distance from the centre of
        each (inf: none)."""
        tracks, s = self.tracks, lane.slots
        lane.shift, lane.pshift = np.full(len(s), np.inf), np.full(len(s), np.inf)
        found = []
        for radius, lat, lng, shift in ((tracks.d_r[s], tracks.d_lat, tracks.d_lng, lane.shift),
                                        (tracks.p_r[s], tracks.p_lat, tracks.p_lng, lane.pshift)):
            inside = radius > 0.0
            if inside.any():
                shift[inside] = _metres(lat[s[inside]], lng[s[inside]], lane.lat[inside], lane.lng[inside])
                inside &= shift < radius
            found.append(inside)
        return found[0], found[1]

    def _new_discs(self, lane: _Lane, rows: np.ndarray, hit_rows: np.ndarray, hits: _Hits) -> None:
        """Discs for these lane rows, centred on their fixes (``hit_rows``: their rows in ``hits``)."""
        tracks, s = self.tracks, lane.slots[rows]
        lat, lng = lane.lat[rows], lane.lng[rows]
        tracks.d_r[s] = self.index.clearance_m(lat, lng)
        tracks.d_lat[s], tracks.d_lng[s] = lat, lng
        s1, s2 = hits.sums()
        tracks.d_count[s], tracks.d_h1[s], tracks.d_h2[s] = hits.counts[hit_rows], s1[hit_rows], s2[hit_rows]
        tracks.x_acc[s] = math.inf  # a new disc: no bound for its shallow zones yet
        lane.shift[rows] = 0.0  # each of these fixes is its disc's centre

    def _presence_discs(
        self, lane: _Lane, settled: list[tuple[int, int, Collection[str]]], hits: _Hits
    ) -> None:
        """Presence discs for these lane rows (row, its row in ``hits``, its device's steady zones: () for
        all its fix's zones), centred on their fixes: ``ZoneIndex.presence_bounds`` of each. Their steady
        summary holds at the version they were settled at; a new summary drops the disc."""
        if not settled or not self._uniform_ratio():
            return
        rows = np.array([r for r, _, _ in settled], dtype=np.int64)
        inside = [hits.ids_of(j) for _, j, _ in settled]
        steady = [zones or None for _, _, zones in settled]
        radius, depth = self.index.presence_bounds(lane.lat[rows], lane.lng[rows], inside, steady)
        tracks, s = self.tracks, lane.slots[rows]
        tracks.p_r[s] = np.where(np.isfinite(depth), radius, 0.0)
        tracks.p_lat[s], tracks.p_lng[s], tracks.p_d[s] = lane.lat[rows], lane.lng[rows], depth

    def _uniform_ratio(self) -> bool:
        """Whether every zone's policy has the global ``enter_depth_ratio`` (a presence disc bounds the
        depth a fix may have in any zone near it with that one ratio)."""
        if self._ratio_checked != self._policy_epoch:
            ratio = self.policy.enter_depth_ratio
            self._ratio_ok = ratio > 0.0 and all(
                self.policy_for(z.id).enter_depth_ratio == ratio for z in self.index.zones()
            )
            self._ratio_checked = self._policy_epoch
        return self._ratio_ok

    def _apply(
        self,
        fixes: Sequence[LocationFix],
        kept: dict[str, list[int]],
        undo: dict[str, Undo],
        uow_factory: Callable[[], UnitOfWork],
        at: datetime,
        lane: _Lane | None = None,
    ) -> list[ZoneEvent]:
        tracks = self.tracks
        n_fast = 0 if lane is None else len(lane.positions)
        devices = [] if lane is None else lane.devices
        in_disc = in_presence = np.zeros(n_fast, bool)
        if n_fast and self.discs:
            in_disc, in_presence = self._in_disc(lane)  # type: ignore[arg-type]
        self.disc_fixes += int(np.count_nonzero(in_disc | in_presence))
        uow: UnitOfWork | None = None
        seen: dict[str, datetime] = {}  # device -> last fix, for the heads written
        busy: list[str] = []  # devices whose open visits this batch decides (``open_devices``, at the end)
        open_now: set[str] = set()  # of those, the ones with an open visit
        beats: list[tuple[int, int, datetime]] = []  # (slot, head version, last fix): heartbeats written
        heads: list[tuple[str, int, datetime]] = []  # those of devices settled in columns (``_steady_rows``)
        try:
            # 0. the change feed, every batch: a device whose head another worker wrote may have had a
            # visit opened or closed there, so it is stepped here even with no zone near its fix
            uow = uow_factory()
            elsewhere = uow.presence.moved()
            if elsewhere is None:  # unknown (first look, reset): every device of the batch
                self.open_devices.update(kept)
                self.open_devices.update(devices)
            elif elsewhere:
                self.open_devices.update(elsewhere)
            # 1. fast-lane rows in their disc, near a zone or with a visit open, or in their presence disc:
            # steady in columns?
            disc_busy: list[int] = []
            unsettled: list[int] = []  # of those, the rows the columns could not settle
            if lane is not None and (in_disc.any() or in_presence.any()):  # both are empty without a lane
                in_zone = in_disc & (tracks.d_count[lane.slots] > 0)
                disc_busy = np.flatnonzero(self._with_open(in_zone, in_disc, devices) | in_presence).tolist()
                if disc_busy and self.skip_steady:
                    ds = lane.slots[disc_busy]
                    outside = ~in_disc[disc_busy]  # only a presence disc: its zones are not known
                    unsettled = self._steady_rows(
                        fixes, disc_busy, lane,
                        (np.where(outside, -1, tracks.d_count[ds]), tracks.d_h1[ds], tracks.d_h2[ds]),
                        uow, beats, heads, presence=True,
                    )
                else:
                    unsettled = disc_busy
            # 2. the index for the other fast-lane rows (and the unsettled), then the other kept fixes,
            # device after device: row j of ``hits`` is lane row ``matched[j]``, for j < len(matched)
            out = ~in_disc
            out[disc_busy] = False
            out[unsettled] = True
            matched = np.flatnonzero(out)
            unsettled = [r for r in unsettled if in_disc[r]]  # their zones are the disc's: to the loop
            order = [lane.positions[r] for r in matched.tolist()] if lane is not None else []
            n_m = len(order)
            first: dict[str, int] = {}
            for device_id, positions in kept.items():
                first[device_id] = len(order)
                order.extend(positions)
            hits = _Hits(self._match(fixes, order), len(order), self._id_hashes)
            counts = hits.counts
            hit_row = np.full(n_fast, -1, dtype=np.int64)
            hit_row[matched] = np.arange(n_m)
            fast_busy: list[int] = []  # matched lane rows near a zone or with a visit open (not unsettled)
            if n_m:
                fresh = ~in_disc[matched]
                if self.discs and fresh.any():
                    self._new_discs(lane, matched[fresh], np.flatnonzero(fresh), hits)  # type: ignore[arg-type]
                near = np.zeros(n_fast, bool)
                near[matched[fresh]] = counts[:n_m][fresh] > 0
                fresh_rows = np.zeros(n_fast, bool)
                fresh_rows[matched[fresh]] = True
                fast_busy = np.flatnonzero(self._with_open(near, fresh_rows, devices)).tolist()
            busy_set = self.open_devices.intersection(kept)
            near_rows = (np.flatnonzero(counts[n_m:]) + n_m).tolist()
            busy_set.update(fixes[order[j]].device_id for j in near_rows)
            slow_busy = [d for d in kept if d in busy_set]  # kept order: deterministic event order
            if (
                not disc_busy and not fast_busy and not unsettled and not slow_busy
                and self.fix_store_wanted is False
            ):
                uow.rollback()
                return []  # the sparse common case: nowhere near any zone, no visit open: no writes
            changed: list[Presence] = []
            events: list[ZoneEvent] = []
            looped = fast_busy
            steady_rows: list[int] = []  # matched lane rows settled here, steady in all their zones
            if fast_busy and self.skip_steady and lane is not None:  # steady by their tracks, in columns
                rows_hit = hit_row[fast_busy]
                s1, s2 = hits.sums()
                hit = (counts[rows_hit], s1[rows_hit], s2[rows_hit])
                looped = self._steady_rows(fixes, fast_busy, lane, hit, uow, beats, heads)
                left = set(looped)
                steady_rows = [r for r in fast_busy if r not in left]
            if unsettled:
                looped = sorted(looped + unsettled)  # lane order: the events' order is the loop's
            loaded = [devices[r] for r in looped] + slow_busy
            busy += loaded
            stored = uow.presence.load(loaded) if loaded else {}
            heartbeat = self.heartbeat
            epoch = self._policy_epoch
            c_list, s1_list, s2_list = hits.lists()
            work: list[tuple[str, list[tuple[int, int]], Undo]] = []  # devices to step
            settled: list[tuple[int, int, Collection[str]]] = []  # lane rows steady here (row, hits row,
            # steady zones)
            skips = 0
            for r in looped:  # one fix each: a steady device is settled in a few comparisons
                device_id = devices[r]
                device = stored.get(device_id)
                i = order[j := int(hit_row[r])]
                if device is not None:
                    memo = device.memo
                    summary = memo[1] if memo is not None and memo[0] == epoch else self._summary(device)
                    last_seen = device.last_fix_at
                    t = fixes[i].recorded_at
                    slot = int(lane.slots[r])  # type: ignore[union-attr]
                    if (
                        summary is not None and summary.ok and last_seen is not None
                        and (tracks.s_version[slot] != device.version or tracks.s_epoch[slot] != epoch)
                    ):  # the version and the epoch make the summary: rewritten only when they moved
                        tracks.set_summary(slot, device.version, epoch, summary.n_steady, summary.h1,
                                           summary.h2, summary.until_s, last_seen)
                    if (
                        summary is not None and summary.ok and last_seen is not None
                        and last_seen < t < summary.until
                        and (
                            c_list[j] == summary.n_steady and s1_list[j] == summary.h1
                            and s2_list[j] == summary.h2
                            or c_list[j] > summary.n_steady
                            and self._only_shallow_more(fixes[i], j, hits, summary, slot)
                        )
                    ):
                        # stepping would change nothing stored but the device's last fix (``_summary``)
                        settled.append((r, j, summary.steady))
                        skips += 1
                        if summary.n_steady:
                            open_now.add(device_id)
                        if t - last_seen >= heartbeat:
                            seen[device_id] = t
                            beats.append((slot, device.version, t))
                        continue
                work.append((device_id, [(j, i)], lane.before(r)))  # type: ignore[union-attr]
            self.steady_skips += skips
            if self.discs and lane is not None:  # presence discs for the matched rows found steady
                settled += [(r, int(hit_row[r]), ()) for r in steady_rows]
                self._presence_discs(lane, settled, hits)
            for device_id in slow_busy:
                rows_all = list(enumerate(kept[device_id], first[device_id]))
                work.append((device_id, rows_all, undo.get(device_id)))
            for device_id, rows_all, before_batch in work:
                device = stored.get(device_id)
                summary = last_seen = None
                if device is not None:
                    last_seen = device.last_fix_at
                    memo = device.memo
                    summary = memo[1] if memo is not None and memo[0] == epoch else self._summary(device)
                rows = [(j, i) for j, i in rows_all if last_seen is None or fixes[i].recorded_at > last_seen]
                if not rows:  # all late for the head
                    if device is not None and any(p.is_open for p in device.presences.values()):
                        open_now.add(device_id)
                    continue
                t = fixes[rows[-1][1]].recorded_at
                is_due = last_seen is None or t - last_seen >= heartbeat
                steady = summary is not None and summary.ok
                if steady:  # every fix in exactly the device's steady zones: a count and two hash sums
                    for j, i in rows:
                        if (
                            c_list[j] != summary.n_steady or s1_list[j] != summary.h1  # type: ignore[union-attr]
                            or s2_list[j] != summary.h2 or fixes[i].recorded_at >= summary.until  # type: ignore[union-attr]
                        ):
                            steady = False
                            break
                if steady:
                    self.steady_skips += 1
                    if summary.n_steady:  # type: ignore[union-attr]
                        open_now.add(device_id)
                    if is_due:
                        seen[device_id] = t
                    continue
                before = device.presences if device is not None else {}
                current = dict(before)
                self._step_device(fixes, [i for _, i in rows], before_batch, hits.ids_by_fix(rows),
                                  current, before, events, summary)
                moved = False
                for zone_id, p in current.items():
                    if p.is_open:
                        open_now.add(device_id)
                    old = before.get(zone_id)
                    if old is p or (old is None and not p.is_open):
                        continue
                    if old is not None and only_seen_later(old, p):
                        continue  # the head carries the last fix (see ``geofence.store.StoredDevice``)
                    changed.append(p)
                    moved = True
                if moved or (is_due and (device is not None and device.version > 0 or device_id in open_now)):
                    seen[device_id] = t
            if heads:
                uow.presence.beat(heads)
            if changed or seen:
                uow.presence.save(changed, seen=seen)
            if events:
                uow.events.add(events, recorded_at=at)
            if uow.fixes is not None:  # every accepted fix, those the discs settled without the index too
                fast = lane.positions if lane is not None else ()
                accepted = sorted({*fast, *(i for positions in kept.values() for i in positions)})
                uow.fixes.add([fixes[i] for i in accepted], received_at=at)
            uow.commit()
        except BaseException:
            if uow is not None:
                uow.rollback()
            raise
        # after commit: the cache that lets most batches skip the database
        for slot, version, t in beats:  # a heartbeat moves the head on by one version and changes no row:
            if tracks.s_version[slot] == version:  # the summary holds at the new version, with the new fix
                tracks.s_version[slot], tracks.s_last[slot] = version + 1, t.timestamp()
        self.open_devices.difference_update(busy)
        self.open_devices.update(open_now)
        return events

    def _with_open(self, near: np.ndarray, rows: np.ndarray, devices: list[str]) -> np.ndarray:
        """``near`` (lane rows in some zone), and the other ``rows`` of devices with a visit open: those
        are busy too (their fix may end it). Only rows in no zone are looked up in ``open_devices``."""
        away = np.flatnonzero(rows & ~near)
        if len(away) and self.open_devices:
            opened = self.open_devices
            near = near.copy()
            near[[r for r in away.tolist() if devices[r] in opened]] = True
        return near

    def _steady_rows(
        self, fixes: Sequence[LocationFix], rows: list[int], lane: _Lane,
        hit: tuple[np.ndarray, np.ndarray, np.ndarray], uow: UnitOfWork,
        beats: list[tuple[int, int, datetime]], heads: list[tuple[str, int, datetime]],
        presence: bool = False,
    ) -> list[int]:
        """The steady test of ``_apply``'s loop, in columns, for the lane rows whose track holds the
        summary of the device's current copy (same head version, same zone policies): a fix in exactly
        the steady zones (``hit``: each row's count and hash sums of the zones that contain its fix),
        after the stored last fix and before the first dwell due. Those devices are settled here (in
        ``heads`` and ``beats`` when a heartbeat is due: their head is written at the version tested;
        ``open_devices`` already says whether they have a visit open: the loop put them there when it
        made the summary, from the same stored copy, and the zones-sync job refreshes it from the
        database); the loop takes the other rows, decides them one by one as before, and refreshes their
        tracks. Returns the rows left to the loop."""
        tracks = self.tracks
        if not self._watch(uow):
            return rows  # no copies: nothing is known current without a read
        r = np.array(rows, dtype=np.int64)
        s = lane.slots[r]
        current = tracks.cv[s]
        ok = (tracks.s_version[s] == current) & (current > 0) & (tracks.s_epoch[s] == self._policy_epoch)
        if not ok.any():
            return rows
        counts, s1, s2 = hit
        t = lane.stamps[r]
        last = tracks.s_last[s]
        ok &= (last < t) & (t < tracks.s_until[s])
        steady = (counts == tracks.s_count[s]) & (s1 == tracks.s_h1[s]) & (s2 == tracks.s_h2[s])
        # or in the steady zones and, besides, only in zones too shallow for the fix's accuracy (the
        # track's bound holds for its disc and its summary: ``_only_shallow_more``)
        shallow = ~steady & (counts > tracks.s_count[s])
        with np.errstate(invalid="ignore"):  # no disc: inf * 0 (or -inf + inf) is nan, which nothing exceeds
            shallow &= lane.acc[r] > tracks.x_acc[s] + lane.shift[r] * tracks.x_per_m[s]
            held = np.zeros(len(rows), bool)
            if presence:  # or in its presence disc: in every steady zone, too shallow for any other zone
                shift = lane.pshift[r]
                held = (shift < tracks.p_r[s]) & (
                    lane.acc[r] * self.policy.enter_depth_ratio > tracks.p_d[s] + shift * (1.0 + AREA_SLACK)
                )
        self.presence_skips += int(np.count_nonzero(ok & held & ~(steady | shallow)))
        ok &= steady | shallow | held
        settled = np.flatnonzero(ok)
        self.steady_skips += len(settled)
        self.column_skips += len(settled)
        shallow_settled = int(np.count_nonzero(shallow & ok))
        self.shallow_skips += shallow_settled
        self.shallow_column_skips += shallow_settled
        devices = lane.devices
        # a heartbeat is due a heartbeat after the stored last fix: in whole microseconds, exact (a time's
        # POSIX seconds are within 0.25 us of it until 2106)
        gap = np.rint(t * 1e6).astype(np.int64) - np.rint(last * 1e6).astype(np.int64)
        due = np.flatnonzero(ok & (gap >= self.heartbeat // _MICROSECOND))
        if len(due):
            due_rows, versions = r[due].tolist(), current[due].tolist()
            positions = lane.positions
            ats = [fixes[positions[x]].recorded_at for x in due_rows]
            heads += zip(map(devices.__getitem__, due_rows), versions, ats, strict=True)
            beats += zip(s[due].tolist(), versions, ats, strict=True)
        unsettled: list[int] = r[~ok].tolist()
        return unsettled

    def _watch(self, uow: UnitOfWork) -> bool:
        """Bring ``tracks.cv`` up to date with the store's current copies (the change feed is read, and
        the store tells of every change since: ``_copy_moved``); False when it keeps none."""
        versions = uow.presence.watch_versions(self._copy_moved)
        if versions is None:
            return False
        if versions is not self._versions:  # another store's copies: read every track's version once
            self._versions = versions
            tracks = self.tracks
            slots = tracks.slots()
            ids = [tracks.device_ids[x] for x in slots.tolist()]
            tracks.cv[:] = -1
            tracks.cv[slots] = np.fromiter(map(versions.get, ids, repeat(-1)), np.int64, len(ids))
        return True

    def _copy_moved(
        self, versions: dict[str, int], device_ids: Sequence[str] | None, new_versions: Sequence[int]
    ) -> None:
        if versions is not self._versions:
            return  # a store this ingestor no longer reads
        tracks = self.tracks
        if device_ids is None:
            tracks.cv[:] = -1
        elif len(device_ids) < 8:  # most notices are of one copy: numpy's per-call cost would dominate
            for device_id, version in zip(device_ids, new_versions, strict=True):
                if (slot := tracks.slot_of.get(device_id)) is not None:
                    tracks.cv[slot] = version
        else:
            slots = np.fromiter(map(tracks.slot_of.get, device_ids, repeat(-1)), np.int64, len(device_ids))
            known = slots >= 0
            tracks.cv[slots[known]] = np.asarray(new_versions, dtype=np.int64)[known]

    def _only_shallow_more(
        self, fix: LocationFix, row: int, hits: _Hits, summary: _Summary, slot: int | None = None
    ) -> bool:
        """True when the fix is in every steady zone of the device and its other zone hits are all too
        shallow (or too imprecise) to start an enter: stepping the device would then change nothing
        stored but its last fix, as for a steady one (``_step_device`` skips exactly those hits).

        A fast-lane fix (``slot``: its track) in its device's disc also leaves the track the accuracy
        above which a fix in the disc is too shallow for every such zone (``_shallow_bound``)."""
        zone_ids = hits.ids_of(row)
        steady = summary.steady
        extra = [z for z in zone_ids if z not in steady]
        if len(zone_ids) - len(extra) != summary.n_steady:
            return False  # a steady zone the fix is not in: stepped
        distance = self.index.signed_distance_m
        depths = []
        for zone_id in extra:  # hits: the index found the centre inside
            d = distance(zone_id, fix.lat, fix.lng, True)
            if not leaves_outside_alone(fix, d, self.policy_for(zone_id)):
                return False
            depths.append(-d)
        self.shallow_skips += 1
        if slot is not None and self.tracks.d_r[slot] > 0.0:  # the fix is in this disc (see ``_apply``)
            self._shallow_bound(slot, fix, extra, depths)
        return True

    def _shallow_bound(self, slot: int, fix: LocationFix, extra: list[str], depths: list[float]) -> None:
        """Keep on the track what the accuracy of a fix in its disc must exceed for every one of these
        zones (which all contain the disc) to be too shallow to enter: ``x_acc`` plus ``x_per_m`` per
        metre from the disc's centre. A point of the disc is no deeper in a zone than the centre plus its
        distance from it (an area's depth, measured in each point's own projection, by 0.1 % more);
        ``depths`` are the fix's, which is the centre when the disc was made at it."""
        tracks, index = self.tracks, self.index
        lat, lng = float(tracks.d_lat[slot]), float(tracks.d_lng[slot])
        at_centre = lat == fix.lat and lng == fix.lng
        base = per_m = 0.0
        for zone_id, depth in zip(extra, depths, strict=True):
            ratio = self.policy_for(zone_id).enter_depth_ratio
            if ratio <= 0.0:
                return
            if not at_centre:
                depth = -index.signed_distance_m(zone_id, lat, lng, True)
            base = max(base, (depth * 1.001 + 0.01) / ratio)
            per_m = max(per_m, 1.001 / ratio)
        tracks.x_acc[slot], tracks.x_per_m[slot] = base, per_m

    def _summary(self, device: StoredDevice) -> _Summary | None:
        """The device's presences sorted into steady ones and the others (kept on the stored copy until
        it or a zone's policy changes).

        A device with no other presence is *steady* for a fix in exactly its steady zones (inside with no
        dwell due yet, or dwelling: ``presence.stays_inside``), compared as a count and two sums of
        44-bit hashes of the zone ids (per fix, vectorised over the batch: ``_Hits.lists``): stepping it
        would change nothing stored but its last fix, so it is not stepped (``_apply``, which reads the
        memo first and calls this only when it is missing or stale)."""
        if not self.skip_steady:
            return None
        count, h1, h2, until = 0, 0.0, 0.0, _NEVER
        steady: list[str] = []
        other: list[str] = []
        info = self._zone_info
        for zone_id, p in device.presences.items():
            zone = info.get(zone_id)
            if zone is None:
                zone = self._info(zone_id)
            state = p.state
            if zone is not None and (state is _DWELLING and p.dwelled or state is _INSIDE and not p.dwelled):
                if state is _INSIDE and p.entered_at is not None:
                    until = min(until, p.entered_at + zone[2])
                steady.append(zone_id)
                count, h1, h2 = count + 1, h1 + zone[0], h2 + zone[1]
            else:
                other.append(zone_id)
        ok = not other and count <= MAX_SUMMED_ZONES and device.version > 0
        summary = _Summary(count, h1, h2, until, until.timestamp(), frozenset(steady), tuple(other), ok)
        device.memo = (self._policy_epoch, summary)
        return summary

    def _info(self, zone_id: str) -> tuple[float, float, timedelta] | None:
        """A zone's hashes and dwell time, kept until the zones or their policies change (None: the zone
        is not in the index)."""
        if zone_id not in self.index:
            return None
        info = self._zone_info[zone_id] = (*_zone_hash(zone_id), self.policy_for(zone_id).dwell_after)
        return info

    def _id_hashes(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The zone-id hashes of an index id table (computed once per table: it changes with the zones)."""
        if self._hashed_ids is not ids:
            pairs = np.array(  # a removed zone's slot (None) is never matched
                [_zone_hash(z) if z is not None else (0.0, 0.0) for z in ids.tolist()], dtype=np.float64
            ).reshape(-1, 2)
            self._hashed_ids, self._id_hash_arrays = ids, (pairs[:, 0].copy(), pairs[:, 1].copy())
        return self._id_hash_arrays

    def _step_device(
        self, fixes: Sequence[LocationFix], positions: list[int], before: Undo,
        hits: Mapping[int, list[str]], current: dict[str, Presence], stored: Mapping[str, Presence],
        events: list[ZoneEvent], summary: _Summary | None = None,
    ) -> None:
        """Step every candidate zone of one device with each of its fixes, in time order.

        Steady visits are skipped: a stored, unchanged presence inside (not dwelling yet and not due
        to) or dwelling, whose zone contains the fix centre, would only get a newer ``last_fix_at``,
        which the device's head carries (see ``_apply``). With the device's ``summary`` (and no dwell
        due) they are left out with set operations; otherwise each zone is checked with
        ``stays_inside``. Skipping gives the same rows and events as stepping
        (``test_steady_visits_skip_the_machine...``).
        """
        prev_pos = (before[0], before[1], before[3]) if before else None
        index = self.index
        skip = self.skip_steady
        touched: set[str] = set()  # zones whose presence this batch has changed
        for i in positions:
            fix = fixes[i]
            speed = None  # best estimate (centre to centre) for the zones' enter speed limit
            if prev_pos is not None:
                dt_s = (fix.recorded_at - prev_pos[2]).total_seconds()
                if dt_s > 0:
                    speed = distance_m(prev_pos[0], prev_pos[1], fix.lat, fix.lng) / dt_s
            previous = None if prev_pos is None else (prev_pos[0], prev_pos[1])  # for the spike hold
            prev_pos = (fix.lat, fix.lng, fix.recorded_at)
            inside = hits.get(i, ())
            at = fix.recorded_at
            if summary is not None and at < summary.until:
                # steady zones that still hold the fix are left out; the others, and any open zone the
                # fix left, are stepped
                inside_set = set(inside)
                zone_ids = (inside_set ^ summary.steady).union(summary.other, touched)
            else:
                inside_set = inside  # type: ignore[assignment]
                zone_ids = {z for z, p in current.items() if p.is_open}
                zone_ids.update(inside)
            for zone_id in zone_ids:
                if zone_id not in index:
                    continue  # removed: its presences are closed by the zone's removal
                p = current.get(zone_id)
                if p is None:  # no presence: only a fix deep enough for its accuracy can start one
                    d = index.signed_distance_m(zone_id, fix.lat, fix.lng, zone_id in inside_set)
                    if skip and leaves_outside_alone(fix, d, self.policy_for(zone_id)):
                        continue  # a hit too shallow (or too imprecise) to start an enter
                    p = Presence(fix.device_id, zone_id)
                elif not p.is_open and zone_id not in inside_set:
                    continue  # an outside row the fix is not in: nothing to step
                elif (
                    skip and p is stored.get(zone_id) and zone_id in inside
                    and stays_inside(p, at, self.policy_for(zone_id).dwell_after)
                ):
                    continue  # a steady visit: nothing but the device's last fix would change
                elif p.state in INSIDE_STATES and zone_id in inside:
                    # an open visit only asks whether the centre is inside (the sign of the distance),
                    # and the index just said it is (it agrees with signed_distance_m's sign exactly)
                    d = CENTRE_INSIDE
                else:
                    d = index.signed_distance_m(zone_id, fix.lat, fix.lng, zone_id in inside_set)
                new, fired = step(p, fix, d, self.policy_for(zone_id), speed_mps=speed, previous=previous)
                if new is not p:
                    current[zone_id] = new
                    touched.add(zone_id)
                events.extend(fired)

    def _match(self, fixes: Sequence[LocationFix], order: list[int]) -> ZoneMatches:
        lats = np.fromiter((fixes[i].lat for i in order), dtype=np.float64, count=len(order))
        lngs = np.fromiter((fixes[i].lng for i in order), dtype=np.float64, count=len(order))
        return self.index.match_many(lats, lngs)

    # -- timers and zone lifecycle ----------------------------------------------------------------
    def sweep_presences(self, presences: Iterable[Presence], at: datetime) -> Changes:
        """Pure core of the periodic sweep: DWELL by timer, EXIT after silence (see ``presence.sweep``)."""
        changed: list[Presence] = []
        events: list[ZoneEvent] = []
        for p in presences:
            new, fired = sweep(p, at, self.policy_for(p.zone_id))
            if new is not p:
                changed.append(new)
            events.extend(fired)
        return changed, events

    def close_zone(self, presences: Iterable[Presence], at: datetime) -> Changes:
        """A zone went away: EXIT ``zone_removed`` for every open visit in it."""
        changed: list[Presence] = []
        events: list[ZoneEvent] = []
        for p in presences:
            new, fired = close(p, at)
            changed.append(new)
            events.extend(fired)
        return changed, events

    def adopt_in_zone(self, zone_id: str, at: datetime) -> list[Presence]:
        """A new zone: devices whose recent last fix (this process's cache) is well inside are adopted
        silently, so the zone's creation does not fire an ENTER for people already there."""
        policy = self.policy_for(zone_id)
        tracks = self.tracks
        slots = tracks.slots()
        slots = slots[tracks.at_s[slots] >= (at - policy.silence_exit_after).timestamp()]
        if not len(slots):
            return []
        found = self.index.match_many(tracks.lat[slots], tracks.lng[slots])  # one pass for all devices
        adopted: list[Presence] = []
        in_zone = found.positions[found.zone_ids() == zone_id]
        for slot in slots[in_zone].tolist():
            device_id, track = tracks.device_ids[slot], tracks.row(slot)
            d = self.index.signed_distance_m(zone_id, track.lat, track.lng)
            last = LocationFix(device_id, track.lat, track.lng, track.accuracy_m, track.last_fix_at)
            p = adopt(device_id, zone_id, last, d, policy)
            if p is not None:
                adopted.append(p)
        return adopted
