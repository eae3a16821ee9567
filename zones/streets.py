"""Street graphs for travel-time zones: which OSM ways a mode may use, at what speed, in which direction.

Pure: takes way records (tags + node positions), returns a :class:`StreetGraph` of plain arrays. The
extract reader (``zones/osm.py``) feeds it; tests can feed it hand-made ways.

Every way node is a graph node and every consecutive pair an edge (no simplification): a polygon drawn
from the edges follows the streets exactly, and the brute-force checks can test every position OSM has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

EARTH_RADIUS_M = 6_371_008.8
MODES = ("walk", "drive")

# Typical free-flow car speeds per highway class (km/h): lower than most limits, because junctions and
# lights slow town traffic. A lower numeric `maxspeed` tag wins. Classes missing here are not driven.
DRIVE_SPEEDS_KMH: Mapping[str, float] = MappingProxyType(
    {
        "motorway": 100.0, "motorway_link": 60.0, "trunk": 80.0, "trunk_link": 50.0,
        "primary": 50.0, "primary_link": 40.0, "secondary": 45.0, "secondary_link": 40.0,
        "tertiary": 40.0, "tertiary_link": 35.0, "unclassified": 35.0, "road": 30.0,
        "residential": 30.0, "living_street": 10.0, "service": 15.0,
    }
)
# Walking speed (km/h) per class; motorways, their links and trunk roads are absent: nobody walks there.
WALK_SPEED_KMH = 5.0
WALK_SPEEDS_KMH: Mapping[str, float] = MappingProxyType(
    dict.fromkeys(
        (
            "primary", "primary_link", "secondary", "secondary_link", "tertiary", "tertiary_link",
            "unclassified", "road", "residential", "living_street", "service", "pedestrian", "footway",
            "path", "track", "cycleway", "bridleway", "corridor", "platform", "crossing", "elevator",
        ),
        WALK_SPEED_KMH,
    )
    | {"steps": 2.5}  # stairs: about half walking speed
)
SPEEDS_KMH: Mapping[str, Mapping[str, float]] = MappingProxyType(
    {"walk": WALK_SPEEDS_KMH, "drive": DRIVE_SPEEDS_KMH}
)
# The first (or last) metres between a store and the street it is snapped to, per mode (km/h).
ACCESS_SPEED_KMH: Mapping[str, float] = MappingProxyType({"walk": WALK_SPEED_KMH, "drive": 15.0})
MIN_EDGE_S = 1e-3  # scipy's csgraph would read an explicit 0 weight as "no edge"

_NO = frozenset({"no", "private"})
_YES = frozenset({"yes", "designated", "permissive", "destination", "customers", "delivery"})


@dataclass(frozen=True)
class Way:
    """One OSM way: its tags and the positions of its nodes (``ids``, ``lats``, ``lngs`` in order)."""

    tags: Mapping[str, str]
    ids: tuple[int, ...]
    lats: tuple[float, ...]
    lngs: tuple[float, ...]


@dataclass(frozen=True)
class StreetGraph:
    """A directed street graph for one travel ``mode``: node positions and edges with travel times.

    Edges are unique per (src, dst), keeping the fastest. ``time_s[i]`` is the time to go from
    ``src[i]`` to ``dst[i]``; a one-way street has one edge, a two-way street two.
    """

    mode: str
    lat: NDArray[np.float64]
    lng: NDArray[np.float64]
    src: NDArray[np.int64]
    dst: NDArray[np.int64]
    length_m: NDArray[np.float64]
    time_s: NDArray[np.float64]
    speeds_kmh: Mapping[str, float]
    max_speed_kmh: float
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def node_count(self) -> int:
        return int(self.lat.size)


@dataclass(frozen=True)
class ExtractInfo:
    """Where a graph comes from: the extract's file name and the date of its data (None if unknown)."""

    name: str
    date: datetime | None


def allowed(tags: Mapping[str, str], mode: str) -> bool:
    """Whether ``mode`` may use a way with these tags (class, access, foot / motor_vehicle tags)."""
    cls = tags.get("highway", "")
    if cls not in SPEEDS_KMH[mode] or tags.get("area") == "yes" and mode == "drive":
        return False
    specific = ("foot",) if mode == "walk" else ("motorcar", "motor_vehicle")
    for key in specific:
        if tags.get(key) in _YES:
            return True
        if tags.get(key) in _NO:
            return False
    if mode == "walk" and tags.get("sidewalk") in ("both", "left", "right", "yes"):
        return True
    return tags.get("access") not in _NO


def direction(tags: Mapping[str, str], mode: str) -> int:
    """+1 forward only, -1 backward only, 0 both ways. Walking ignores one-way streets."""
    if mode == "walk":
        return 0
    oneway = tags.get("oneway", "")
    if oneway in ("yes", "true", "1"):
        return 1
    if oneway in ("-1", "reverse"):
        return -1
    if oneway == "no":
        return 0
    implied = tags.get("junction") in ("roundabout", "circular") or tags.get("highway") == "motorway"
    return 1 if implied else 0


def speed_kmh(tags: Mapping[str, str], mode: str) -> float:
    """The mode's speed on this way: its class's, or a lower numeric ``maxspeed`` when driving."""
    speed = SPEEDS_KMH[mode][tags.get("highway", "")]
    if mode == "drive":
        limit = _parse_maxspeed(tags.get("maxspeed"))
        if limit is not None and 0 < limit < speed:
            speed = limit
    return speed


def build_graph(ways: Iterable[Way], mode: str) -> StreetGraph:
    """The ``mode``'s graph of these ways (nodes renumbered 0..n-1 in order of first use)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}")
    index: dict[int, int] = {}
    lats: list[float] = []
    lngs: list[float] = []
    src: list[int] = []
    dst: list[int] = []
    speed: list[float] = []
    fwd: list[int] = []
    for way in ways:
        if not allowed(way.tags, mode):
            continue
        v = speed_kmh(way.tags, mode)
        d = direction(way.tags, mode)
        prev = -1
        for osm_id, la, ln in zip(way.ids, way.lats, way.lngs, strict=True):
            node = index.get(osm_id)
            if node is None:
                node = index[osm_id] = len(lats)
                lats.append(la)
                lngs.append(ln)
            if prev >= 0 and prev != node:
                src.append(prev)
                dst.append(node)
                speed.append(v)
                fwd.append(d)
            prev = node
    lat = np.asarray(lats, dtype=np.float64)
    lng = np.asarray(lngs, dtype=np.float64)
    a, b = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
    v_mps = np.asarray(speed, dtype=np.float64) / 3.6
    d_arr = np.asarray(fwd, dtype=np.int64)
    length = haversine_m(lat[a], lng[a], lat[b], lng[b])
    keep_f, keep_b = d_arr >= 0, d_arr <= 0
    e_src = np.concatenate([a[keep_f], b[keep_b]])
    e_dst = np.concatenate([b[keep_f], a[keep_b]])
    e_len = np.concatenate([length[keep_f], length[keep_b]])
    e_time = np.maximum(np.concatenate([length[keep_f] / v_mps[keep_f], length[keep_b] / v_mps[keep_b]]),
                        MIN_EDGE_S)
    # one edge per (src, dst): the fastest (two ways may share a pair of nodes)
    order = np.lexsort((e_time, e_dst, e_src))
    e_src, e_dst, e_len, e_time = e_src[order], e_dst[order], e_len[order], e_time[order]
    first = np.ones(e_src.size, dtype=bool)
    first[1:] = (e_src[1:] != e_src[:-1]) | (e_dst[1:] != e_dst[:-1])
    speeds = SPEEDS_KMH[mode]
    return StreetGraph(
        mode=mode, lat=lat, lng=lng, src=e_src[first], dst=e_dst[first], length_m=e_len[first],
        time_s=e_time[first], speeds_kmh=speeds, max_speed_kmh=max(speeds.values()),
    )


def haversine_m(
    lat1: NDArray[np.float64] | float, lng1: NDArray[np.float64] | float,
    lat2: NDArray[np.float64] | float, lng2: NDArray[np.float64] | float,
) -> NDArray[np.float64]:
    """Great-circle distance in metres (vectorised)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lng2) - np.asarray(lng1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_RADIUS_M * np.arcsin(np.minimum(1.0, np.sqrt(h))), dtype=np.float64)


def _parse_maxspeed(value: str | None) -> float | None:
    if not value:
        return None
    text = value.strip().lower()
    factor = 1.609344 if text.endswith("mph") else 1.0
    try:
        number = float(text.removesuffix("mph").strip())
    except ValueError:
        return None
    return number * factor if math.isfinite(number) else None
