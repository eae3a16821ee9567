"""The reference lane: read every device of the batch, step every fix, save what changed.

This is the ingest's meaning; the accelerated lane (``geofence.ingest.accelerated``) must give the same
events, presence rows and heads, and its tests replay the same fixes through both.

For one batch, after the checks and the per-device screen (``geofence.ingest.screening``):

1. every zone that contains a kept fix's centre (``ZoneIndex.match_many``, one pass);
2. every device's stored presences and head, in one unit of work;
3. per device with a zone hit or a visit open, its fixes newer than its head's last fix, each stepped in
   every candidate zone (``stepping.step_device``);
4. one write of the presences that changed and the heads (a head whose only change is a newer last fix
   once a heartbeat), with the events, in one transaction; a version conflict retries the batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

import numpy as np

from geofence.events import ZoneEvent
from geofence.fixes import LocationFix
from geofence.ingest.results import FixResult
from geofence.ingest.screening import Undo
from geofence.ingest.stepping import changes_of, head_due, step_device
from geofence.ingest.zone_policies import ZoneLookup, ZonePolicies
from geofence.presence import Presence
from geofence.store import UnitOfWork, answers_of


class ReferenceLane:
    def __init__(self, index: ZoneLookup, policies: ZonePolicies, heartbeat: timedelta) -> None:
        self.index, self.policies, self.heartbeat = index, policies, heartbeat

    def apply(
        self, fixes: Sequence[LocationFix], kept: dict[str, list[int]], undo: dict[str, Undo],
        uow_factory: Callable[[], UnitOfWork], at: datetime, results: list[FixResult],
    ) -> list[ZoneEvent]:
        """Step and save the kept fixes (by device, each device's in time order), with the batch's
        ``results`` where answers are kept; the events committed."""
        zones_at = self._zones_at(fixes, [i for positions in kept.values() for i in positions])
        uow = uow_factory()
        try:
            stored = uow.presence.load(list(kept))
            changed: list[Presence] = []
            events: list[ZoneEvent] = []
            seen: dict[str, datetime] = {}  # device -> last fix, for the heads written
            for device_id, positions in kept.items():
                device = stored.get(device_id)
                before = device.presences if device is not None else {}
                if not any(p.is_open for p in before.values()) and not any(i in zones_at for i in positions):
                    continue  # nowhere near a zone and no visit open: nothing to step
                last_at = None if device is None else device.last_fix_at
                newer = [i for i in positions if last_at is None or fixes[i].recorded_at > last_at]
                if not newer:
                    continue  # all late for the head: a late fix never rewinds a presence
                current = dict(before)
                step_device(fixes, newer, undo.get(device_id), zones_at, current, before, events,
                            index=self.index, policy_for=self.policies)
                device_changed, is_open = changes_of(before, current)
                changed += device_changed
                t = fixes[newer[-1]].recorded_at
                has_head = device is not None and device.version > 0
                if device_changed or head_due(device, t, self.heartbeat) and (has_head or is_open):
                    seen[device_id] = t
            answers = answers_of(uow)
            if not changed and not seen and uow.fixes is None and answers is None:
                uow.rollback()
                return []
            with uow.writing():  # sent together where the store can (a lost race may raise at its end)
                if answers is not None:  # first: see ``geofence.store.AnswerStore``
                    answers.add(results, events)
                if events:  # then: a store may number them with its first write (its clock's tick)
                    uow.events.add(events, recorded_at=at)
                if changed or seen:
                    uow.presence.save(changed, seen=seen)
            if uow.fixes is not None:
                uow.fixes.add([fixes[i] for positions in kept.values() for i in positions], received_at=at)
            uow.commit()
        except BaseException:
            uow.rollback()
            raise
        return events

    def _zones_at(self, fixes: Sequence[LocationFix], positions: list[int]) -> dict[int, list[str]]:
        """Fix position -> ids of the zones that contain its centre (fixes in no zone are absent)."""
        lats = np.fromiter((fixes[i].lat for i in positions), dtype=np.float64, count=len(positions))
        lngs = np.fromiter((fixes[i].lng for i in positions), dtype=np.float64, count=len(positions))
        found = self.index.match_many(lats, lngs)
        ids = found.ids[found.zones].tolist()
        zones_at: dict[int, list[str]] = {}
        for row, zone_id in zip(found.positions.tolist(), ids, strict=True):
            zones_at.setdefault(positions[row], []).append(zone_id)
        return zones_at
