"""Constructed tracks around a circular store zone, for the pure presence tests (no zones index)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count

from geofence.fixes import LocationFix, distance_m

T0 = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)
STORE = (48.8566, 2.3522)  # (lat, lng)
M_PER_DEG_LAT = 111_195.0


def offset(lat: float, lng: float, north_m: float, east_m: float) -> tuple[float, float]:
    """Move a (lat, lng) point by metres north/east (small distances)."""
    return (
        lat + north_m / M_PER_DEG_LAT,
        lng + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))),
    )


def circle_distance(center: tuple[float, float], radius_m: float, lat: float, lng: float) -> float:
    """Signed distance to a circle (metres, < 0 inside): what ZoneIndex.signed_distance_m returns."""
    return distance_m(center[0], center[1], lat, lng) - radius_m


def fix(
    north_m: float, east_m: float, t_s: float, *, accuracy_m: float = 10.0, speed_mps: float | None = None,
    device_id: str = "dev-1", center: tuple[float, float] = STORE,
) -> LocationFix:
    lat, lng = offset(center[0], center[1], north_m, east_m)
    return LocationFix(
        device_id=device_id, lat=lat, lng=lng, accuracy_m=accuracy_m,
        recorded_at=T0 + timedelta(seconds=t_s), speed_mps=speed_mps,
    )


def jitter(rng: random.Random, radius_m: float) -> tuple[float, float]:
    """A uniformly random offset within a disc of ``radius_m``."""
    r = radius_m * math.sqrt(rng.random())
    a = rng.random() * 2 * math.pi
    return r * math.cos(a), r * math.sin(a)


def deterministic_ids(prefix: str = "id") -> Iterator[str]:
    return (f"{prefix}{i}" for i in count())
