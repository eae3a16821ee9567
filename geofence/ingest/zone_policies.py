"""Each zone's fence policy, built once and kept until the zone changes, and the zone index the ingest
reads (``ZoneLookup``: what it needs of ``zones.ZoneIndex``)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import timedelta
from typing import Protocol

import numpy as np

from geofence.policy import FencePolicy
from zones.index import ZoneMatches
from zones.model import Zone


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


class ZonePolicies:
    """``default`` for every zone unless ``per_zone`` says otherwise; ``epoch`` moves on whenever a zone's
    policy may have changed (what the accelerated lane's steady summaries are valid for)."""

    def __init__(self, default: FencePolicy, per_zone: Callable[[str], FencePolicy] | None = None) -> None:
        self.default = default
        self._per_zone = per_zone or (lambda _zone_id: default)
        self._cache: dict[str, FencePolicy] = {}
        self.epoch = 1

    def __call__(self, zone_id: str) -> FencePolicy:
        policy = self._cache.get(zone_id)
        if policy is None:
            policy = self._cache[zone_id] = self._per_zone(zone_id)
        return policy

    def forget(self, zone_id: str) -> None:
        """The zone changed or went away: rebuild its policy on next use."""
        self._cache.pop(zone_id, None)
        self.epoch += 1

    def dwell_after(self, zone_id: str) -> timedelta:
        return self(zone_id).dwell_after
