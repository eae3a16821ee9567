"""Bulk build of the index's cell tables in bounded memory: covers in chunks, tables assembled key range by
key range.

Why: building the candidate disks of every zone at once, then sorting every (cell, zone) entry in one go,
needs memory proportional to the number of zones times ~470 candidates (12 GB at a million walking zones).
Here zones are covered ``CHUNK`` at a time (optionally in worker processes, one chunk per task), each chunk
keeps only its interior and boundary cells, and the CSR tables are assembled in slices of the key space, so
the temporaries are those of one chunk and of one slice. The cells are exactly those of ``cells.cover``
(``tests/zones/test_build.py`` compares them for every chunking).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import h3
import numpy as np
from h3.api import basic_int as h3i
from shapely.geometry.base import BaseGeometry

from zones.cells import circle_covers, cover, disk_k
from zones.errors import ZoneError
from zones.geometry import check_circle, check_fields, checked_shape, haversine_m, reference_latlng
from zones.model import Circle, Zone
from zones.sizing import choose_resolution, zone_size_m

CHUNK = 4096  # zones per cover task: ~470 candidates each, ~60 MB of temporaries
SLICES = 64  # key-space slices the tables are assembled in


@dataclass
class Facts:
    """What the index keeps of each zone of a chunk (aligned with the chunk's zones)."""

    res: np.ndarray  # int8; -1: invalid (see ``errors``)
    ref: np.ndarray  # (n, 2) lat, lng: a circle's centre, an area's bbox centre
    reach_m: np.ndarray  # distance from ref to the farthest point of the zone


@dataclass
class Covered:
    """One chunk's covers, flattened: ``cells[i]`` belongs to zone ``owner[i]`` (index into the chunk)."""

    facts: Facts
    cells: np.ndarray  # int64
    owner: np.ndarray  # int32
    interior: np.ndarray  # bool
    errors: list[tuple[int, str]]  # (index into the chunk, ZoneError message)


def zone_facts(zone: Zone) -> tuple[int, tuple[float, float], float, BaseGeometry | None]:
    """Validate ``zone`` (raises ZoneError) and return (res, ref, reach_m, shape); a circle's shape is
    not made (None): validating it needs no polygon, and the index makes it only for an exact test."""
    g = zone.geometry
    if isinstance(g, Circle):
        check_fields(zone)
        check_circle(g)
        return choose_resolution(g.radius_m), (float(g.lat), float(g.lng)), float(g.radius_m), None
    shape = checked_shape(zone)
    res = choose_resolution(zone_size_m(zone), area=True)
    ref = reference_latlng(zone, shape)
    vertices = [xy for p in getattr(shape, "geoms", [shape]) for xy in p.exterior.coords]
    reach = max(haversine_m(ref[0], ref[1], y, x) for x, y in vertices)
    return res, ref, reach, shape


def cover_chunk(zones: Sequence[Zone]) -> Covered:
    """Validate and cover ``zones`` (one task: what a worker process runs).

    Circles are covered in vectorised groups of the same resolution and disk size (``circle_covers``),
    the rest, and circles whose disk met a pentagon, one by one (``cover``).
    """
    n = len(zones)
    res = np.full(n, -1, dtype=np.int8)
    ref = np.zeros((n, 2))
    reach = np.zeros(n)
    errors: list[tuple[int, str]] = []
    shapes: dict[int, BaseGeometry | None] = {}
    groups: dict[tuple[int, int], list[int]] = {}
    for i, z in enumerate(zones):
        try:
            r, rf, rc, shape = zone_facts(z)
        except ZoneError as exc:
            errors.append((i, str(exc)))
            continue
        res[i], ref[i], reach[i] = r, rf, rc
        if shape is None:
            groups.setdefault((r, disk_k(z.geometry.radius_m, r)), []).append(i)  # type: ignore[union-attr]
        else:
            shapes[i] = shape
    parts: list[tuple[np.ndarray, np.ndarray, int]] = []
    for (r, _), members in groups.items():
        bulk = circle_covers([zones[i].geometry for i in members], r)  # type: ignore[misc]
        for i, got in zip(members, bulk, strict=True):
            if got is None:  # a pentagon in the disk: one by one (a circle's cover needs no shape)
                shapes[i] = None
            else:
                parts.append((got[0], got[1], i))
    for i, shape in shapes.items():
        inside, edge = cover(zones[i], shape, int(res[i]), (float(ref[i, 0]), float(ref[i, 1])))
        parts.append((inside, edge, i))
    return Covered(Facts(res, ref, reach), *_flatten(parts), errors)


def _flatten(parts: list[tuple[np.ndarray, np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, bool)
    cells = np.concatenate([c for a, b, _ in parts for c in (a, b)])
    sizes = [len(a) + len(b) for a, b, _ in parts]
    owner = np.repeat(np.array([i for _, _, i in parts], dtype=np.int32), sizes)
    interior = np.concatenate([np.arange(len(a) + len(b)) < len(a) for a, b, _ in parts])
    return cells, owner, interior


def covers(
    zones: Sequence[Zone], workers: int | None = None, chunk: int = CHUNK
) -> Iterator[tuple[int, Covered]]:
    """(offset of the chunk in ``zones``, its covers), ``chunk`` zones at a time, in order.

    ``workers``: processes covering chunks in parallel (None: one per CPU when there are several chunks;
    1: in this process). Results are consumed as they come, at most ``2 × workers`` chunks ahead.
    """
    starts = list(range(0, len(zones), chunk))
    if workers is None:
        workers = min(os.cpu_count() or 1, len(starts))
    if workers <= 1 or len(starts) <= 1:
        for a in starts:
            yield a, cover_chunk(zones[a : a + chunk])
        return
    # spawned, not forked: the caller may be a service with threads (a fork copies their locks as held)
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        ahead: list[tuple[int, Future[Covered]]] = []
        todo = iter(starts)
        for a in todo:
            ahead.append((a, pool.submit(cover_chunk, zones[a : a + chunk])))
            if len(ahead) >= 2 * workers:
                break
        while ahead:
            a, fut = ahead.pop(0)
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append((nxt, pool.submit(cover_chunk, zones[nxt : nxt + chunk])))
            yield a, fut.result()


@dataclass
class Tables:
    """Every resolution's sorted cells with CSR tables of zone slots (see ``zones.kernel``)."""

    res: np.ndarray  # the resolutions in use, ascending
    kstart: np.ndarray  # keys kstart[r]:kstart[r + 1] are of resolution res[r]
    keys: np.ndarray  # int64 cells, ascending, then one sentinel (int64 max)
    istart: np.ndarray  # int64, per key (and the sentinel): its first entry in islots
    bstart: np.ndarray  # int64, likewise into bslots
    islots: np.ndarray  # int32 zone slots
    bslots: np.ndarray  # int32 zone slots


def assemble(
    cells: list[np.ndarray], slots: list[np.ndarray], interior: list[np.ndarray], slices: int = SLICES
) -> Tables:
    """The tables of entries given in parts (``cells[i]``, ``slots[i]``, ``interior[i]`` aligned).

    Entries are split into ``slices`` ranges of cell values (quantiles of a sample), each range sorted
    and packed on its own: peak memory is the parts plus one range's temporaries. The parts' arrays are
    consumed (the lists are emptied).
    """
    total = sum(len(c) for c in cells)
    if total == 0:
        empty, zero = np.zeros(0, np.int32), np.zeros(1, np.int64)
        sentinel = np.array([np.iinfo(np.int64).max], dtype=np.int64)
        return Tables(np.zeros(0, np.int64), zero, sentinel, zero, zero.copy(), empty, empty)
    step = max(1, total // 100_000)
    sample = np.concatenate([c[::step] for c in cells])
    edges = np.unique(np.quantile(sample, np.linspace(0, 1, slices + 1)[1:-1], method="nearest"))
    # split every part by range once (a stable argsort per part), keeping the parts' order
    by_range: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(len(edges) + 1)]
    while cells:
        c, s, f = cells.pop(0), slots.pop(0), interior.pop(0)
        where = np.searchsorted(edges, c, side="right")
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(len(edges) + 2))
        c, s, f = c[order], s[order], f[order]
        for r in range(len(edges) + 1):
            lo, hi = bounds[r], bounds[r + 1]
            if hi > lo:
                by_range[r].append((c[lo:hi].copy(), s[lo:hi].copy(), f[lo:hi].copy()))
    keys: list[np.ndarray] = []
    ist: list[np.ndarray] = []
    bst: list[np.ndarray] = []
    isl: list[np.ndarray] = []
    bsl: list[np.ndarray] = []
    i_at = b_at = 0
    for parts in by_range:
        if not parts:
            continue
        c = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts]).astype(np.int32)
        f = np.concatenate([p[2] for p in parts])
        parts.clear()
        order = np.lexsort((s, c))
        c, s, f = c[order], s[order], f[order]
        del order
        k, inv = np.unique(c, return_inverse=True)
        del c
        n_k = len(k)
        ist.append(np.searchsorted(inv[f], np.arange(n_k)).astype(np.int64) + i_at)
        bst.append(np.searchsorted(inv[~f], np.arange(n_k)).astype(np.int64) + b_at)
        isl.append(s[f])
        bsl.append(s[~f])
        i_at += len(isl[-1])
        b_at += len(bsl[-1])
        keys.append(k)
    all_keys = np.concatenate([*keys, [np.iinfo(np.int64).max]])
    istart = np.concatenate([*ist, [i_at]])
    bstart = np.concatenate([*bst, [b_at]])
    del keys, ist, bst
    res_of = (all_keys[:-1] >> 52) & 0xF  # H3 index layout: 4 bits of resolution at bit 52
    res = np.unique(res_of)
    kstart = np.searchsorted(res_of, np.append(res, 16)).astype(np.int64)
    return Tables(res, kstart, all_keys, istart, bstart, np.concatenate(isl), np.concatenate(bsl))


def spatial_order(zones: Sequence[Zone], res: int = 7) -> list[Zone]:
    """``zones`` sorted by the H3 cell of a point of each (a circle's centre, an area's first vertex).

    Why: nearby zones then share a chunk (their candidate cells are shared, see ``cells.circle_covers``)
    and get nearby slots, so the lookup's reads of per-zone data follow the fixes (sorted by cell)."""
    key = np.zeros(len(zones), dtype=np.int64)
    for i, z in enumerate(zones):
        try:
            lat, lng = _a_point(z)
            key[i] = h3i.latlng_to_cell(lat, lng, res)
        except (TypeError, ValueError, KeyError, IndexError, h3.H3BaseException):
            pass  # an invalid zone: its chunk reports it
    return [zones[i] for i in np.argsort(key, kind="stable").tolist()]


def _a_point(zone: Zone) -> tuple[float, float]:
    g = zone.geometry
    if isinstance(g, Circle):
        return float(g.lat), float(g.lng)
    c = g.geojson["coordinates"]
    while isinstance(c[0], list | tuple):
        c = c[0]
    return float(c[1]), float(c[0])


__all__ = ["CHUNK", "Covered", "Facts", "Tables", "assemble", "cover_chunk", "covers", "spatial_order"]
