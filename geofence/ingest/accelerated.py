"""The accelerated lane: the reference lane's check -> group -> step -> save, with what cannot change
left out. Its contract is the reference's events, rows and heads (the equivalence tests of
``tests/geofence/test_ingest.py``).

What it leaves out, cheapest first:

1. fixes the fast screen accepted (``fast_screen``) in their device's disc or presence disc (``discs``)
   are not matched against the index;
2. devices far from every zone with no visit open (``open_devices``: this process's own, plus those of
   every device whose head another process wrote, from the change feed read first) are not read;
3. devices whose track holds the steady summary of their current stored copy are settled in columns
   (``columns``), the others are read (``PresenceStore.load``: from the process's cache) and settled by
   their summary (``steady``) when every fix is in exactly their steady zones;
4. the rest are stepped (``stepping.step_device``) without their steady visits and too-shallow hits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import datetime, timedelta

import numpy as np

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.ingest.columns import Heartbeat, IngestStats, SteadyColumns
from geofence.ingest.discs import Discs
from geofence.ingest.fast_screen import Lane
from geofence.ingest.results import FixResult
from geofence.ingest.screening import Undo
from geofence.ingest.steady import Hits, Summary, ZoneFacts
from geofence.ingest.stepping import changes_of, head_due, step_device
from geofence.ingest.zone_policies import ZoneLookup, ZonePolicies
from geofence.presence import Presence, leaves_outside_alone
from geofence.store import StoredDevice, UnitOfWork, answers_of
from geofence.tracks import Tracks
from zones.index import ZoneMatches


class _Batch:
    """What one batch decides and writes."""

    def __init__(self, fixes: Sequence[LocationFix], lane: Lane | None) -> None:
        self.fixes, self.lane = fixes, lane
        self.devices = [] if lane is None else lane.devices
        self.seen: dict[str, datetime] = {}  # device -> last fix, for the heads written
        self.busy: list[str] = []  # devices whose open visits this batch decides
        self.open_now: set[str] = set()  # of those, the ones with an open visit
        self.beats: list[tuple[int, int, datetime]] = []  # (slot, head version, last fix): heartbeats
        self.heads: list[Heartbeat] = []  # those of devices settled in columns
        self.changed: list[Presence] = []
        self.events: list[ZoneEvent] = []
        self.stored: dict[str, StoredDevice] = {}


class AcceleratedLane:
    def __init__(
        self, index: ZoneLookup, policies: ZonePolicies, tracks: Tracks, open_devices: set[str],
        heartbeat: timedelta,
    ) -> None:
        self.index, self.policies, self.tracks, self.heartbeat = index, policies, tracks, heartbeat
        self.open_devices = open_devices  # devices with an open visit (a superset: see the module's 2.)
        self.stats = IngestStats()
        self.facts = ZoneFacts(index, policies)
        self.discs = Discs(tracks, index, policies)
        self.columns = SteadyColumns(tracks, policies, self.stats, heartbeat)

    def follow_zones(self) -> None:
        if self.discs.follow_zones():
            self.facts.clear()

    def apply(
        self, fixes: Sequence[LocationFix], kept: dict[str, list[int]], undo: dict[str, Undo],
        uow_factory: Callable[[], UnitOfWork], at: datetime, lane: Lane | None, results: list[FixResult],
    ) -> list[ZoneEvent]:
        """Step and save the kept fixes (by device, from the reference screen) and the lane's, with the
        batch's ``results`` where answers are kept; the events committed."""
        n_fast = 0 if lane is None else len(lane.positions)
        in_disc = in_presence = np.zeros(n_fast, bool)
        if lane is not None and n_fast:
            in_disc, in_presence = self.discs.locate(lane)
        self.stats.disc_fixes += int(np.count_nonzero(in_disc | in_presence))
        batch = _Batch(fixes, lane)
        uow: UnitOfWork | None = None
        try:
            uow = uow_factory()
            orphans = self._read_feed(uow, kept, batch.devices)
            disc_busy, unsettled = self._settle_in_discs(batch, uow, in_disc, in_presence)
            # the index for the other lane rows (and the unsettled), then the other kept fixes, device
            # after device: row j of ``hits`` is lane row ``matched[j]``, for j < len(matched)
            out = ~in_disc
            out[disc_busy] = False
            out[unsettled] = True
            matched = np.flatnonzero(out)
            unsettled = [r for r in unsettled if in_disc[r]]  # their zones are the disc's: to the loop
            order = [] if lane is None else [lane.positions[r] for r in matched.tolist()]
            first: dict[str, int] = {}
            for device_id, positions in kept.items():
                first[device_id] = len(order)
                order.extend(positions)
            hits = Hits(self._match(fixes, order), len(order), self.facts.id_hashes)
            hit_row = np.full(n_fast, -1, dtype=np.int64)
            hit_row[matched] = np.arange(len(matched))
            fast_busy = self._busy_lane_rows(batch, matched, in_disc, hits)
            busy_set = self.open_devices.intersection(kept)
            near_rows = (np.flatnonzero(hits.counts[len(matched):]) + len(matched)).tolist()
            busy_set.update(fixes[order[j]].device_id for j in near_rows)
            slow_busy = [d for d in kept if d in busy_set]  # kept order: deterministic event order
            if (
                not disc_busy and not fast_busy and not unsettled and not slow_busy and not orphans
                and uow.fixes is None and answers_of(uow) is None
            ):
                uow.rollback()
                return []  # the sparse common case: nowhere near any zone, no visit open: no writes
            looped = fast_busy
            if fast_busy and lane is not None:  # steady by their tracks, in columns
                rows_hit = hit_row[fast_busy]
                s1, s2 = hits.sums()
                hit = (hits.counts[rows_hit], s1[rows_hit], s2[rows_hit])
                looped = self.columns.settle(fixes, fast_busy, lane, hit, uow, batch.beats, batch.heads)
            left = set(looped)
            steady_rows = [r for r in fast_busy if r not in left]  # matched rows settled in columns
            if unsettled:
                looped = sorted(looped + unsettled)  # lane order: the events' order is the loop's
            loaded = [batch.devices[r] for r in looped] + slow_busy
            batch.busy += loaded
            batch.stored = uow.presence.load(loaded) if loaded else {}
            work = self._settle_lane_rows(batch, looped, hit_row, order, hits, steady_rows)
            for device_id in slow_busy:
                rows_all = list(enumerate(kept[device_id], first[device_id]))
                work.append((device_id, rows_all, undo.get(device_id)))
            for device_id, rows_all, before_batch in work:
                self._step_or_settle(batch, device_id, rows_all, before_batch, hits)
            if orphans:
                self._restep(batch, uow, orphans)
            self._write(batch, uow, at, order if lane is None else lane.positions + order[len(matched):],
                        results)
            uow.commit()
        except BaseException:
            if uow is not None:
                uow.rollback()
            raise
        self.columns.carry(batch.beats)  # the cache that lets most batches skip the database
        self.open_devices.difference_update(batch.busy)
        self.open_devices.update(batch.open_now)
        return batch.events

    def _read_feed(self, uow: UnitOfWork, kept: Collection[str], devices: list[str]) -> list[tuple[str, int]]:
        """The change feed, every batch: a device whose head another process wrote may have had a visit
        opened or closed there, so it is stepped here even with no zone near its fix. Returns the
        devices (and their track's slot) not in this batch whose last fix here is newer than the one
        written elsewhere: a fix settled here without a write (steady), which the rows written there
        never saw (``_restep``)."""
        elsewhere = uow.presence.moved()
        if elsewhere is None:  # unknown (first look, reset): every device of the batch
            self.open_devices.update(kept)
            self.open_devices.update(devices)
            return []
        if not elsewhere:
            return []
        self.open_devices.update(elsewhere)
        tracks, orphans = self.tracks, []
        for device_id in elsewhere:
            slot = tracks.slot_of.get(device_id)
            if slot is None or device_id in kept:
                continue
            written = uow.presence.moved_last_fix(device_id)
            if written is not None and tracks.at_s[slot] > written.timestamp() + 1e-6:
                orphans.append((device_id, slot))
        if orphans and devices:
            in_lane = set(devices)
            orphans = [(d, slot) for d, slot in orphans if d not in in_lane]
        return orphans

    def _restep(self, batch: _Batch, uow: UnitOfWork, orphans: list[tuple[str, int]]) -> None:
        """Step, against the rows written elsewhere, the last fix this process accepted of each of these
        devices (settled without a write): as if that process's request came first, and this one's
        after it — the order the fixes were taken in (docs/presence.md, "One truth across processes")."""
        tracks = self.tracks
        fixes = [LocationFix(d, float(tracks.lat[s]), float(tracks.lng[s]), float(tracks.acc[s]),
                             tracks.last_fix_at(s)) for d, s in orphans]
        found = self._match(fixes, list(range(len(fixes))))
        zones_at: dict[int, list[str]] = {}
        for row, zone_id in zip(found.positions.tolist(), found.ids[found.zones].tolist(), strict=True):
            zones_at.setdefault(row, []).append(zone_id)
        stored = uow.presence.load([f.device_id for f in fixes])
        for k, fix in enumerate(fixes):
            device = stored.get(fix.device_id)
            if device is None or device.last_fix_at is None or fix.recorded_at <= device.last_fix_at:
                continue
            before = device.presences
            current = dict(before)
            step_device(fixes, [k], None, {k: zones_at[k]} if k in zones_at else {}, current, before,
                        batch.events, index=self.index, policy_for=self.policies)
            changed, is_open = changes_of(before, current)
            batch.busy.append(fix.device_id)
            if is_open:
                batch.open_now.add(fix.device_id)
            if changed:
                batch.changed += changed
                batch.seen[fix.device_id] = fix.recorded_at

    def _settle_in_discs(
        self, batch: _Batch, uow: UnitOfWork, in_disc: np.ndarray, in_presence: np.ndarray
    ) -> tuple[list[int], list[int]]:
        """Lane rows in their disc (near a zone or with a visit open) or in their presence disc: the busy
        ones, and of those the ones the columns could not settle."""
        lane = batch.lane
        if lane is None or not (in_disc.any() or in_presence.any()):
            return [], []
        tracks = self.tracks
        in_zone = in_disc & (tracks.d_count[lane.slots] > 0)
        disc_busy = np.flatnonzero(self._with_open(in_zone, in_disc, batch.devices) | in_presence).tolist()
        if not disc_busy:
            return [], []
        ds = lane.slots[disc_busy]
        outside = ~in_disc[disc_busy]  # only a presence disc: its zones are not known
        hit = (np.where(outside, -1, tracks.d_count[ds]), tracks.d_h1[ds], tracks.d_h2[ds])
        unsettled = self.columns.settle(batch.fixes, disc_busy, lane, hit, uow, batch.beats, batch.heads,
                                        presence=True)
        return disc_busy, unsettled

    def _busy_lane_rows(
        self, batch: _Batch, matched: np.ndarray, in_disc: np.ndarray, hits: Hits
    ) -> list[int]:
        """The matched lane rows outside their disc that are near a zone or have a visit open (new discs
        are made for them all)."""
        lane, n_m = batch.lane, len(matched)
        if lane is None or not n_m:
            return []
        fresh = ~in_disc[matched]
        if fresh.any():
            self.discs.make(lane, matched[fresh], np.flatnonzero(fresh), hits)
        n_fast = len(lane.positions)
        near = np.zeros(n_fast, bool)
        near[matched[fresh]] = hits.counts[:n_m][fresh] > 0
        fresh_rows = np.zeros(n_fast, bool)
        fresh_rows[matched[fresh]] = True
        busy: list[int] = np.flatnonzero(self._with_open(near, fresh_rows, batch.devices)).tolist()
        return busy

    def _with_open(self, near: np.ndarray, rows: np.ndarray, devices: list[str]) -> np.ndarray:
        """``near`` (lane rows in some zone), and the other ``rows`` of devices with a visit open: those
        are busy too (their fix may end it). Only rows in no zone are looked up in ``open_devices``."""
        away = np.flatnonzero(rows & ~near)
        if len(away) and self.open_devices:
            opened = self.open_devices
            near = near.copy()
            near[[r for r in away.tolist() if devices[r] in opened]] = True
        return near

    def _settle_lane_rows(
        self, batch: _Batch, looped: list[int], hit_row: np.ndarray, order: list[int], hits: Hits,
        steady_rows: list[int],
    ) -> list[tuple[str, list[tuple[int, int]], Undo]]:
        """Lane rows the columns left, one fix each: settled by the stored copy's steady summary in a few
        comparisons, or returned to be stepped. Makes presence discs for the rows found steady."""
        lane, tracks, fixes = batch.lane, self.tracks, batch.fixes
        work: list[tuple[str, list[tuple[int, int]], Undo]] = []
        if lane is None:
            return work
        epoch, heartbeat = self.policies.epoch, self.heartbeat
        c_list, s1_list, s2_list = hits.lists()
        settled: list[tuple[int, int, Collection[str]]] = []  # (row, hits row, steady zones)
        for r in looped:
            device_id = batch.devices[r]
            device = batch.stored.get(device_id)
            i = order[j := int(hit_row[r])]
            if device is not None:
                summary = self.facts.summary(device)
                last_seen = device.last_fix_at
                t = fixes[i].recorded_at
                slot = int(lane.slots[r])
                if summary.ok and last_seen is not None and (
                    tracks.s_version[slot] != device.version or tracks.s_epoch[slot] != epoch
                ):  # the version and the epoch make the summary: rewritten only when they moved
                    tracks.set_summary(slot, device.version, epoch, summary.n_steady, summary.h1,
                                       summary.h2, summary.until_s, last_seen)
                if summary.ok and last_seen is not None and last_seen < t < summary.until and (
                    c_list[j] == summary.n_steady and s1_list[j] == summary.h1 and s2_list[j] == summary.h2
                    or c_list[j] > summary.n_steady
                    and self._only_shallow_more(fixes[i], j, hits, summary, slot)
                ):  # stepping would change nothing stored but the device's last fix
                    settled.append((r, j, summary.steady))
                    self.stats.steady_skips += 1
                    if summary.n_steady:
                        batch.open_now.add(device_id)
                    if t - last_seen >= heartbeat:
                        batch.seen[device_id] = t
                        batch.beats.append((slot, device.version, t))
                    continue
            work.append((device_id, [(j, i)], lane.before(r)))
        settled += [(r, int(hit_row[r]), ()) for r in steady_rows]
        self.discs.make_presence(lane, settled, hits)
        return work

    def _step_or_settle(
        self, batch: _Batch, device_id: str, rows_all: list[tuple[int, int]], before_batch: Undo, hits: Hits
    ) -> None:
        """One device's fixes (``rows_all``: (hits row, position) each): settled if every one is in
        exactly its steady zones, stepped otherwise."""
        fixes = batch.fixes
        device = batch.stored.get(device_id)
        summary: Summary | None = None
        last_seen = None
        if device is not None:
            last_seen = device.last_fix_at
            summary = self.facts.summary(device)
        rows = [(j, i) for j, i in rows_all if last_seen is None or fixes[i].recorded_at > last_seen]
        if not rows:  # all late for the head
            if device is not None and any(p.is_open for p in device.presences.values()):
                batch.open_now.add(device_id)
            return
        t = fixes[rows[-1][1]].recorded_at
        is_due = head_due(device, t, self.heartbeat)
        if summary is not None and summary.ok:  # every fix in exactly the steady zones: count, hash sums
            c_list, s1_list, s2_list = hits.lists()
            if all(
                c_list[j] == summary.n_steady and s1_list[j] == summary.h1 and s2_list[j] == summary.h2
                and fixes[i].recorded_at < summary.until for j, i in rows
            ):
                self.stats.steady_skips += 1
                if summary.n_steady:
                    batch.open_now.add(device_id)
                if is_due:
                    batch.seen[device_id] = t
                return
        before = device.presences if device is not None else {}
        current = dict(before)
        step_device(fixes, [i for _, i in rows], before_batch, hits.ids_by_fix(rows), current, before,
                    batch.events, index=self.index, policy_for=self.policies, skip=True, summary=summary)
        changed, is_open = changes_of(before, current)
        if is_open:
            batch.open_now.add(device_id)
        batch.changed += changed
        if changed or (is_due and (device is not None and device.version > 0 or device_id in batch.open_now)):
            batch.seen[device_id] = t

    def _only_shallow_more(self, fix: LocationFix, row: int, hits: Hits, summary: Summary, slot: int) -> bool:
        """True when the fix is in every steady zone of the device and its other zone hits are all too
        shallow (or too imprecise) to start an enter: stepping the device would then change nothing
        stored but its last fix (``step_device`` skips exactly those hits). A fix in its device's disc
        also leaves the track the accuracy bound for such zones (``Discs.shallow_bound``)."""
        zone_ids = hits.ids_of(row)
        steady = summary.steady
        extra = [z for z in zone_ids if z not in steady]
        if len(zone_ids) - len(extra) != summary.n_steady:
            return False  # a steady zone the fix is not in: stepped
        distance = self.index.signed_distance_m
        depths = []
        for zone_id in extra:  # hits: the index found the centre inside
            d = distance(zone_id, fix.lat, fix.lng, True)
            if not leaves_outside_alone(fix, d, self.policies(zone_id)):
                return False
            depths.append(-d)
        self.stats.shallow_skips += 1
        if self.tracks.d_r[slot] > 0.0:  # the fix is in this disc
            self.discs.shallow_bound(slot, fix, extra, depths)
        return True

    def _match(self, fixes: Sequence[LocationFix], order: list[int]) -> ZoneMatches:
        lats = np.fromiter((fixes[i].lat for i in order), dtype=np.float64, count=len(order))
        lngs = np.fromiter((fixes[i].lng for i in order), dtype=np.float64, count=len(order))
        return self.index.match_many(lats, lngs)

    def _write(
        self, batch: _Batch, uow: UnitOfWork, at: datetime, accepted: list[int], results: list[FixResult]
    ) -> None:
        with uow.writing():  # sent together where the store can (a lost race may raise at its end)
            if (answers := answers_of(uow)) is not None:  # first: see ``geofence.store.AnswerStore``
                answers.add(results, batch.events)
            if batch.events:  # first of the batch's writes: a store may number them with its clock's tick
                uow.events.add(batch.events, recorded_at=at)
            if batch.heads:
                uow.presence.beat(batch.heads)
            if batch.changed or batch.seen:
                uow.presence.save(batch.changed, seen=batch.seen)
        if uow.fixes is not None:
            uow.fixes.add([batch.fixes[i] for i in accepted], received_at=at)
