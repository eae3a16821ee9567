"""Read an OpenStreetMap extract (``.osm.pbf``) into walk and drive street graphs, offline.

The one module of ``zones`` that reads a file: the operator's extract, given by path (nothing is
downloaded). pyosmium (libosmium's bindings) reads it: it streams the file in C++, resolves node positions
for ways itself and is kept by the OSM tooling community; see docs/zones.md for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import osmium
from numpy.typing import NDArray

from zones.errors import ZoneError
from zones.streets import ExtractInfo, StreetGraph, Way, build_graph


@dataclass(frozen=True)
class StreetExtract:
    """What travel-time zones need from one extract: both graphs, building positions, provenance."""

    info: ExtractInfo
    walk: StreetGraph
    drive: StreetGraph
    building_lat: NDArray[np.float64]
    building_lng: NDArray[np.float64]

    def graph(self, mode: str) -> StreetGraph:
        return self.walk if mode == "walk" else self.drive


def read_extract(path: str | Path) -> StreetExtract:
    """Read ``path`` (.osm.pbf, .osm, .osm.bz2...). Raises :class:`ZoneError` if unreadable or empty.

    Ways cut by the extract's border keep their nodes inside it (a way is split where a node position
    is missing). The extract's date is its header's replication timestamp, else the newest way edit.
    """
    p = Path(path)
    if not p.is_file():
        raise ZoneError(f"street extract {p} not found")
    handler = _Collector()
    try:
        handler.apply_file(str(p), locations=True)
        reader = osmium.io.Reader(str(p), osmium.osm.osm_entity_bits.NOTHING)
        stamp = reader.header().get("osmosis_replication_timestamp")
        reader.close()
    except RuntimeError as exc:  # libosmium reports bad files as RuntimeError
        raise ZoneError(f"cannot read street extract {p.name}: {exc}") from None
    if not handler.ways:
        raise ZoneError(f"street extract {p.name} has no streets")
    date = _parse_stamp(stamp) or handler.newest
    return StreetExtract(
        info=ExtractInfo(name=p.name, date=date),
        walk=build_graph(handler.ways, "walk"),
        drive=build_graph(handler.ways, "drive"),
        building_lat=np.asarray(handler.building_lat, dtype=np.float64),
        building_lng=np.asarray(handler.building_lng, dtype=np.float64),
    )


class _Collector(osmium.SimpleHandler):
    """Streets (ways with a ``highway`` tag) and one position per building, from one pass."""

    def __init__(self) -> None:
        super().__init__()
        self.ways: list[Way] = []
        self.building_lat: list[float] = []
        self.building_lng: list[float] = []
        self.newest: datetime | None = None

    def way(self, w: osmium.osm.Way) -> None:
        tags = w.tags
        highway = tags.get("highway")
        if highway is None and "building" not in tags:
            return
        stamp = w.timestamp
        if stamp is not None and stamp.year > 1970 and (self.newest is None or stamp > self.newest):
            self.newest = stamp
        if highway is None:
            for n in w.nodes:
                if n.location.valid():
                    self.building_lat.append(n.location.lat)
                    self.building_lng.append(n.location.lon)
                    break
            return
        kept = {k: str(tags.get(k)) for k in _TAGS if k in tags}
        part: list[tuple[int, float, float]] = []
        for n in w.nodes:
            if n.location.valid():
                part.append((n.ref, n.location.lat, n.location.lon))
                continue
            self._add(kept, part)
            part = []
        self._add(kept, part)

    def _add(self, tags: dict[str, str], part: list[tuple[int, float, float]]) -> None:
        if len(part) >= 2:
            ids, lats, lngs = zip(*part, strict=True)
            self.ways.append(Way(tags=tags, ids=ids, lats=lats, lngs=lngs))


_TAGS = (
    "highway", "oneway", "junction", "maxspeed", "access", "foot", "motorcar", "motor_vehicle", "area",
    "sidewalk",
)


def _parse_stamp(stamp: str | None) -> datetime | None:
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00").replace("\\:", ":"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
