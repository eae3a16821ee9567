"""The tables a ``ZoneIndex`` searches, in the two layouts its lookups read.

A table (``Part``: the base, or a run of zones changed since) is kept flattened over resolutions for the
compiled batch lookup (``Flat``, see ``zones.kernel.lookup``) and, from the first scalar ``match`` after it
is packed, as dicts from cell to the zones it holds (``Scalar``, made by ``scalar_of``). Apart from the index
because these are layouts of data, built once per table; the index decides when to make them and searches
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from zones import build, kernel
from zones.fix_cells import FINE_RES, KEEP, SET

Rows = tuple[tuple[Any, ...], tuple[Any, ...]]  # a cell's zones inside and its boundary rows


class Scalar(NamedTuple):
    """What :meth:`ZoneIndex.match` probes (see ``scalar_of``)."""

    keep: int | None  # masks turning a FINE_RES cell into the finest resolution in use (None: same)
    setb: int
    finest: dict[int, Rows]  # ancestors merged in
    coarser: list[tuple[int, int, dict[int, Rows]]]  # (keep, set, dict) per resolution


@dataclass
class Flat:
    """One table of zones (all resolutions) in the layout of ``zones.kernel.lookup`` (see its docstring)."""

    room: int  # the most (fix, zone) entries one fix can produce
    res: np.ndarray  # the resolutions in use, ascending (keys kstart[r]:kstart[r + 1] are res[r])
    keep: np.ndarray
    setb: np.ndarray
    kstart: np.ndarray
    keys: np.ndarray
    fence: np.ndarray  # every FENCE-th key: the part of the search that stays in cache
    istart: np.ndarray
    bstart: np.ndarray
    islots: np.ndarray
    bslots: np.ndarray


def flat(t: build.Tables, room: int | None = None) -> Flat:
    """``t`` for the kernel; ``room`` (see ``Flat``) when known (a snapshot stores it)."""
    keep, setb = kernel.res_masks(t.res)
    if room is None:
        room = table_room(t)
    fence = np.ascontiguousarray(t.keys[:: kernel.FENCE])
    return Flat(room, t.res, keep, setb, t.kstart, t.keys, fence, t.istart, t.bstart, t.islots, t.bslots)


def table_room(t: build.Tables) -> int:
    """The most (fix, zone) entries one fix can produce in ``t``: its largest block per resolution."""
    room = 0
    for r in range(len(t.res)):
        a, b = int(t.kstart[r]), int(t.kstart[r + 1]) + 1
        room += int(np.diff(t.istart[a:b]).max(initial=0)) + int(np.diff(t.bstart[a:b]).max(initial=0))
    return room


@dataclass
class Part:
    """The base table, or a run: a small table of zones changed since (see ``ZoneIndex``)."""

    flat: Flat
    slots: list[int]  # the zones packed in it
    dead_ids: set[str]  # ids of its zones removed or replaced since it was packed (``match`` skips them)
    scalar: Scalar | None = None


def scalar_of(f: Flat, slot_ids: np.ndarray, circ: np.ndarray) -> Scalar:
    """The dicts of :meth:`ZoneIndex.match` for one table: cell -> (ids it is interior to, boundary rows),
    per resolution. ``slot_ids`` and ``circ``: the index's zone id and circle row of each slot.

    The finest resolution's dict is *merged*: each of its cells also holds what its ancestors hold,
    so most fixes need one probe; a fix whose finest cell is not a key probes the coarser dicts.
    A boundary row is (circle unit vector, dot-product margins, zone id, slot), one shared tuple per
    zone (float64 rounding of the dot product: at most ~2 mm of distance, measured at 10 m to 50 km
    radii, inside the margins' 1 cm slack). Equal tuples are shared too (a zone's interior cells all
    hold the same few ids).
    """
    shared: dict[Any, Any] = {}
    per_res: list[tuple[int, dict[int, Rows]]] = []
    ids = slot_ids[f.islots].tolist()
    rows: dict[int, tuple[Any, ...]] = {}
    for s in set(f.bslots.tolist()):
        ux, uy, uz, cin2, cout2 = circ[s].tolist()
        # dot-product margins: chord^2 < c2  <=>  a.b > 1 - c2 / 2 (areas: never decided here)
        rows[s] = (
            (ux, uy, uz, 1.0 - cin2 / 2.0, 1.0 - cout2 / 2.0, slot_ids[s], s) if cin2 >= 0.0
            else (0.0, 0.0, 0.0, 2.0, -2.0, slot_ids[s], s)
        )
    brow = [rows[s] for s in f.bslots.tolist()]
    ist, bst = f.istart.tolist(), f.bstart.tolist()  # global offsets, one past each block
    for r, res in enumerate(f.res.tolist()):
        first, last = int(f.kstart[r]), int(f.kstart[r + 1])
        table = {}
        for j, key in enumerate(f.keys[first:last].tolist(), start=first):
            inside = tuple(ids[ist[j] : ist[j + 1]])
            edge = tuple(brow[bst[j] : bst[j + 1]])
            value = (shared.setdefault(inside, inside), shared.setdefault(edge, edge))
            table[key] = shared.setdefault(value, value)
        per_res.append((res, table))
    if not per_res:
        return Scalar(None, 0, {}, [])
    finest_res, finest = per_res[-1]
    coarser = [(KEEP[r], SET[r], table) for r, table in per_res[:-1]]
    merged = {}
    for key, (inside, edge) in finest.items():
        for keep, setb, table in coarser:
            up = table.get((key & keep) | setb)
            if up is not None:
                inside, edge = inside + up[0], edge + up[1]
        value = (shared.setdefault(inside, inside), shared.setdefault(edge, edge))
        merged[key] = shared.setdefault(value, value)
    fine_keep = None if finest_res == FINE_RES else KEEP[finest_res]  # None: the fix's own cell
    return Scalar(fine_keep, SET[finest_res], merged, coarser)
