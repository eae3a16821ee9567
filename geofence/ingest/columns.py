"""The accelerated lane's steady test in columns: devices whose track holds the steady summary of their
current stored copy are settled for the whole batch at once, with no read and no step.

A track's summary is valid while the store's copy of the device is at the version it was made from (the
store tells of every change through ``PresenceStore.watch_versions``: ``tracks.cv`` mirrors it) and the
zone policies are those of its epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import repeat

import numpy as np

from geofence.fixes import LocationFix
from geofence.ingest.fast_screen import Lane
from geofence.ingest.zone_policies import ZonePolicies
from geofence.store import UnitOfWork
from geofence.tracks import Tracks
from zones.clearance import AREA_SLACK

_MICROSECOND = timedelta(microseconds=1)
Heartbeat = tuple[str, int, datetime]  # (device, head version, last fix): a head to re-write as is


@dataclass
class IngestStats:
    """What the accelerated lane's shortcuts spared, since start (tests and diagnostics)."""

    steady_skips: int = 0  # devices not stepped because steady
    column_skips: int = 0  # of which, settled in columns by their tracks' summaries
    shallow_skips: int = 0  # of which, with zone hits too shallow to enter besides their steady zones
    shallow_column_skips: int = 0  # of which, settled in columns by their disc's accuracy bound
    disc_fixes: int = 0  # fast-lane fixes in their device's disc or presence disc (not matched)
    presence_skips: int = 0  # steady devices settled by their presence disc alone


class SteadyColumns:
    def __init__(
        self, tracks: Tracks, policies: ZonePolicies, stats: IngestStats, heartbeat: timedelta
    ) -> None:
        self.tracks, self.policies, self.stats, self.heartbeat = tracks, policies, stats, heartbeat
        self._versions: dict[str, int] | None = None  # the store's versions that ``tracks.cv`` mirrors

    def settle(
        self, fixes: Sequence[LocationFix], rows: list[int], lane: Lane,
        hit: tuple[np.ndarray, np.ndarray, np.ndarray], uow: UnitOfWork,
        beats: list[tuple[int, int, datetime]], heads: list[Heartbeat], presence: bool = False,
    ) -> list[int]:
        """For these lane rows: a fix in exactly the steady zones (``hit``: each row's count and hash sums
        of the zones that contain its fix; with ``presence``, -1 for a row known only to be in its
        presence disc), after the stored last fix and before the first dwell due, settles its device here
        (in ``heads`` and ``beats`` when a heartbeat is due: its head is written at the version tested;
        the lane's open devices already say whether it has a visit open). Returns the rows left to the
        per-device loop."""
        tracks = self.tracks
        if not self.watch(uow):
            return rows  # no copies: nothing is known current without a read
        r = np.array(rows, dtype=np.int64)
        s = lane.slots[r]
        current = tracks.cv[s]
        ok = (tracks.s_version[s] == current) & (current > 0) & (tracks.s_epoch[s] == self.policies.epoch)
        if not ok.any():
            return rows
        counts, s1, s2 = hit
        t = lane.stamps[r]
        last = tracks.s_last[s]
        ok &= (last < t) & (t < tracks.s_until[s])
        steady = (counts == tracks.s_count[s]) & (s1 == tracks.s_h1[s]) & (s2 == tracks.s_h2[s])
        # or in the steady zones and, besides, only in zones too shallow for the fix's accuracy (the
        # track's bound holds for its disc and its summary: ``AcceleratedLane._only_shallow_more``)
        shallow = ~steady & (counts > tracks.s_count[s])
        with np.errstate(invalid="ignore"):  # no disc: inf * 0 (or -inf + inf) is nan, which nothing exceeds
            shallow &= lane.acc[r] > tracks.x_acc[s] + lane.shift[r] * tracks.x_per_m[s]
            held = np.zeros(len(rows), bool)
            if presence:  # or in its presence disc: in every steady zone, too shallow for any other zone
                shift = lane.pshift[r]
                ratio = self.policies.default.enter_depth_ratio
                held = (shift < tracks.p_r[s]) & (
                    lane.acc[r] * ratio > tracks.p_d[s] + shift * (1.0 + AREA_SLACK)
                )
        stats = self.stats
        stats.presence_skips += int(np.count_nonzero(ok & held & ~(steady | shallow)))
        ok &= steady | shallow | held
        settled = np.flatnonzero(ok)
        stats.steady_skips += len(settled)
        stats.column_skips += len(settled)
        shallow_settled = int(np.count_nonzero(shallow & ok))
        stats.shallow_skips += shallow_settled
        stats.shallow_column_skips += shallow_settled
        # a heartbeat is due a heartbeat after the stored last fix: in whole microseconds, exact (a time's
        # POSIX seconds are within 0.25 us of it until 2106)
        gap = np.rint(t * 1e6).astype(np.int64) - np.rint(last * 1e6).astype(np.int64)
        due = np.flatnonzero(ok & (gap >= self.heartbeat // _MICROSECOND))
        if len(due):
            due_rows, versions = r[due].tolist(), current[due].tolist()
            positions, devices = lane.positions, lane.devices
            ats = [fixes[positions[x]].recorded_at for x in due_rows]
            heads += zip(map(devices.__getitem__, due_rows), versions, ats, strict=True)
            beats += zip(s[due].tolist(), versions, ats, strict=True)
        unsettled: list[int] = r[~ok].tolist()
        return unsettled

    def carry(self, beats: list[tuple[int, int, datetime]]) -> None:
        """After commit: a heartbeat moves the head on by one version and changes no row, so the summary
        holds at the new version, with the new last fix."""
        tracks = self.tracks
        for slot, version, t in beats:
            if tracks.s_version[slot] == version:
                tracks.s_version[slot], tracks.s_last[slot] = version + 1, t.timestamp()

    def added(self, slot: int) -> None:
        """A new track starts with the version of the store's copy, if it has one."""
        if self._versions is not None:
            self.tracks.cv[slot] = self._versions.get(self.tracks.device_ids[slot], -1)  # type: ignore[arg-type]

    def watch(self, uow: UnitOfWork) -> bool:
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
