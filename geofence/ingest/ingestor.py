"""``Ingestor``: what outlives a request (the zone index, per-zone policies, the device tracks) and the use
case over it — check -> group by device -> step -> save — in the reference or the accelerated lane."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from geofence.events import ZoneEvent
from geofence.fixes import FixLimits, LocationFix
from geofence.ingest.accelerated import AcceleratedLane
from geofence.ingest.columns import IngestStats
from geofence.ingest.fast_screen import Lane, fast_screen
from geofence.ingest.reference import ReferenceLane
from geofence.ingest.results import OK, FixResult, IngestOutcome, tally
from geofence.ingest.screening import Undo, check_and_group, restore, screen
from geofence.ingest.stepping import HEARTBEAT
from geofence.ingest.zone_policies import ZoneLookup, ZonePolicies
from geofence.policy import FencePolicy
from geofence.presence import Presence, adopt, close, sweep
from geofence.store import ConflictError, UnitOfWork, answers_of
from geofence.tracks import Tracks

MAX_CONFLICT_RETRIES = 3
Changes = tuple[list[Presence], list[ZoneEvent]]


class Ingestor:
    """The ingest of one process. ``reference=True`` runs the reference lane (every device read, every fix
    stepped: the meaning, for tests); the default is the accelerated lane, which gives the same events
    and rows (``fast_screen=False`` leaves out its vectorised screen alone, to test that)."""

    def __init__(
        self,
        index: ZoneLookup,
        *,
        policy: FencePolicy,
        limits: FixLimits,
        zone_policy: Callable[[str], FencePolicy] | None = None,
        heartbeat: timedelta = HEARTBEAT,
        reference: bool = False,
        fast_screen: bool = True,
    ) -> None:
        self.index, self.policy, self.limits, self.heartbeat = index, policy, limits, heartbeat
        self.policies = ZonePolicies(policy, zone_policy)
        self.tracks = Tracks()
        # devices with an open visit (any process's, as of the last change feed read, plus this one's own)
        self.open_devices: set[str] = set()
        self._reference = ReferenceLane(index, self.policies, heartbeat) if reference else None
        self._accelerated = AcceleratedLane(index, self.policies, self.tracks, self.open_devices, heartbeat)
        self._fast_screen = fast_screen and not reference

    @property
    def stats(self) -> IngestStats:
        """What the accelerated lane's shortcuts spared (all 0 in the reference lane)."""
        return self._accelerated.stats

    def policy_for(self, zone_id: str) -> FencePolicy:
        return self.policies(zone_id)

    def forget_zone(self, zone_id: str) -> None:
        """The zone changed or went away: rebuild its policy on next use."""
        self.policies.forget(zone_id)

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
        self._accelerated.follow_zones()
        lane = self._screen_fast(fixes, at, refused)
        others = range(len(fixes)) if lane is None else lane.others
        by_device = check_and_group(fixes, others, limits=self.limits, at=at, refused=refused,
                                    results=results)
        kept, undo = screen(fixes, by_device, results, tracks=self.tracks,
                            max_speed_mps=self.policy.max_speed_mps, added=self._accelerated.columns.added)
        events: list[ZoneEvent] = []
        try:
            if kept or (lane is not None and lane.positions):
                events = self._apply_with_retries(fixes, kept, undo, uow_factory, at, lane, results)
            else:
                _answer_alone(uow_factory(), results)
        except BaseException:
            restore(self.tracks, undo)  # nothing was committed: the device tracks go back as they were
            if lane is not None:
                lane.restore()
            raise
        n_fast = 0 if lane is None else len(lane.positions)
        return IngestOutcome(results, events, tally(results, others, n_fast))

    def _screen_fast(
        self, fixes: Sequence[LocationFix], at: datetime, refused: Mapping[int, str] | None
    ) -> Lane | None:
        if not self._fast_screen:
            return None
        return fast_screen(fixes, at, refused, tracks=self.tracks, limits=self.limits,
                           max_speed_mps=self.policy.max_speed_mps)

    def _apply_with_retries(
        self, fixes: Sequence[LocationFix], kept: dict[str, list[int]], undo: dict[str, Undo],
        uow_factory: Callable[[], UnitOfWork], at: datetime, lane: Lane | None, results: list[FixResult],
    ) -> list[ZoneEvent]:
        """Step and save, again on fresh rows after a version conflict (another writer got there first)."""
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                if self._reference is not None:
                    return self._reference.apply(fixes, kept, undo, uow_factory, at, results)
                return self._accelerated.apply(fixes, kept, undo, uow_factory, at, lane, results)
            except ConflictError:
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
        raise AssertionError("unreachable")

    # -- timers and zone lifecycle ----------------------------------------------------------------
    def sweep_presences(self, presences: Iterable[Presence], at: datetime) -> Changes:
        """Pure core of the periodic sweep: DWELL by timer, EXIT after silence (see ``presence.sweep``)."""
        changed: list[Presence] = []
        events: list[ZoneEvent] = []
        for p in presences:
            new, fired = sweep(p, at, self.policies(p.zone_id))
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
        policy = self.policies(zone_id)
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


def _answer_alone(uow: UnitOfWork, results: list[FixResult]) -> None:
    """A batch with nothing to step (every fix rejected or a duplicate) still has its answer kept, where
    answers are kept; otherwise the unit of work is left unused."""
    answers = answers_of(uow)
    if answers is None:
        return
    try:
        answers.add(results, [])
        uow.commit()
    except BaseException:
        uow.rollback()
        raise
