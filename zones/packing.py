"""The zones of a ``ZoneIndex`` by slot and the tables packed from them, and every change that keeps them.

Building (covers in bulk, ``zones.build``), restoring from a snapshot (``Packed``, ``zones.snapshot``),
incremental changes (a zone to the pending list, pending zones packed into runs, removed zones masked) and
compaction. Apart from the lookups (``zones.index``) because it is the other half of the index's work: it
runs when zones change, off the per-fix path, and decides the layout the lookups then only read;
``ZoneIndex`` subclasses it, so both halves work on the same attributes with no indirection per fix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, Self

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from zones import build, clearance
from zones.cells import cover
from zones.circle_rows import circ_of as _circ_of
from zones.circle_rows import circle_rows as _circle_rows
from zones.entries import Entry as _Entry
from zones.entries import LazyEntries
from zones.errors import ZoneError
from zones.geometry import checked_shape, zone_shape
from zones.lookup_tables import Part as _Part
from zones.lookup_tables import flat as _flat
from zones.model import Circle, Zone

PENDING = 32  # zones checked directly (bounding box + shapely) before they are packed into a run
RUN_ZONES = 256  # the most zones in a run made of single changes: re-packing one costs ~5-15 ms of CPU
IMPORT_RUN_ZONES = 4096  # an import (``add_many``) packs its zones in runs of this size
MAX_RUNS = 32  # beyond this, ``compaction_due``


class Packed(NamedTuple):
    """An index's base as ``zones.snapshot`` stores it (slot s of each list or array), plus later zones."""

    ids: Sequence[str | None]  # None: a removed zone's slot
    bodies: Sequence[Zone | bytes | None]  # the zone, or its JSON as read from a snapshot and not decoded
    res: np.ndarray  # int8
    ref: np.ndarray  # (n, 2)
    reach: np.ndarray
    circ: np.ndarray  # (n, 5), see ``PackedZones._grow``
    tables: build.Tables
    room: int
    later: Sequence[Zone]  # zones added or replaced since the base was packed (runs and pending)


_REMOVED = "\x00removed"  # the id of a slot restored from a snapshot whose zone had been removed
_EMPTY = build.assemble([], [], [])


class PackedZones:
    """The zones of a ``ZoneIndex`` and its tables (layout: see ``ZoneIndex``), built and kept up to date."""

    def __init__(self, zones: Iterable[Zone] = (), workers: int | None = 1) -> None:
        """Index ``zones`` (validated: raises ZoneError on the first invalid one; a repeated id: the last
        wins). ``workers``: processes computing covers (None: one per CPU; see ``zones.build.covers``)."""
        self.generation = 0  # bumped by every change of the zones (what a clearance was measured against)
        self._pairs_per_fix = 16.0
        self._clear_cells: clearance.Cells | None = None  # the base's, made on first use after a build
        self._clear_runs: clearance.Cells | None = None  # the runs', made on first use after a run is packed
        self._clear_shapes: clearance.Shapes | None = None
        self._shapes_stale: set[int] = set()  # slots changed since _clear_shapes was updated
        self._build(list(zones), workers)

    # ------------------------------------------------------------------ building
    def _build(self, zones: list[Zone], workers: int | None) -> None:
        # a repeated id: the last wins; slots follow the zones' places (``build.spatial_order``)
        zones = build.spatial_order(list({z.id: z for z in zones}.values()))
        n = len(zones)
        res, ref, reach = np.zeros(n, np.int8), np.zeros((n, 2)), np.zeros(n)
        cells: list[np.ndarray] = []
        owners: list[np.ndarray] = []
        inside: list[np.ndarray] = []
        for at, got in build.covers(zones, workers):
            if got.errors:
                raise ZoneError(got.errors[0][1])
            f, m = got.facts, len(got.facts.res)
            res[at : at + m], ref[at : at + m], reach[at : at + m] = f.res, f.ref, f.reach_m
            cells.append(got.cells)
            owners.append(got.owner + at)
            inside.append(got.interior)
        entries: list[_Entry | None] = [
            _Entry(z, r, (a, b), c, None if isinstance(z.geometry, Circle) else checked_shape(z))
            for z, r, (a, b), c in zip(zones, res.tolist(), ref.tolist(), reach.tolist(), strict=True)
        ]
        tables = build.assemble(cells, owners, inside)
        self._install(entries, [z.id for z in zones], _circ_of(zones), tables, facts=(res, ref, reach))

    def _install(
        self, entries: list[_Entry | None] | LazyEntries, ids: Sequence[str | None], circ: np.ndarray,
        tables: build.Tables, room: int | None = None,
        facts: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Make ``tables`` the base, slot s holding ``entries[s]`` with id ``ids[s]`` and circle row
        ``circ[s]`` (None: a removed zone's slot); ``facts``: the base's (res, ref, reach) arrays."""
        n = len(ids)
        self._facts = facts if facts is not None else (
            np.zeros(0, np.int8), np.zeros((0, 2)), np.zeros(0)
        )
        self._entries: list[_Entry | None] | LazyEntries = entries
        self._slot_of = {z: s for s, z in enumerate(ids) if z is not None}
        self._grow(n + max(1024, n // 4))  # room for changes: growing copies every per-slot array
        ids_arr = np.array(ids, dtype=object)
        alive = ids_arr != None  # noqa: E711 - elementwise
        self._alive[:n] = alive
        ids_arr[~alive] = _REMOVED
        self._ids[:n] = ids_arr
        self._circ[:n] = circ
        self._base = _Part(_flat(tables, room), list(range(n)), set() if alive.all() else {_REMOVED})
        self._runs: list[_Part] = []
        self._run_of: dict[int, int] = {}  # slot -> index of the run holding it
        self._pending: list[int] = []
        self._clear_cells = None
        self._clear_runs = None
        self._clear_shapes = None
        self._shapes_stale = set()
        self.generation += 1

    def _grow(self, n: int) -> None:
        cap = max(16, n)
        self._alive = np.zeros(cap, dtype=bool)
        self._ids = np.empty(cap, dtype=object)
        # per slot: unit vector of a circle's centre and its squared chord margins (see ``circle_rows``);
        # an area has chord margins (-1, inf): every boundary hit goes to shapely
        self._circ = np.zeros((cap, 5))
        self._circ[:, 3], self._circ[:, 4] = -1.0, np.inf

    def _ensure(self, slot: int) -> None:
        if slot < len(self._alive):
            return
        old = (self._alive, self._ids, self._circ)
        self._grow(2 * slot + 16)
        for new, o in zip((self._alive, self._ids, self._circ), old, strict=True):
            new[: len(o)] = o

    def packed(self) -> Packed:
        """What ``zones.snapshot`` writes (see ``Packed``); cheap enough to take under a writer's lock:
        zones are referenced, not encoded."""
        n = len(self._base.slots)
        entries = self._entries
        alive = self._alive[:n].tolist()
        raw = entries.raw if isinstance(entries, LazyEntries) else (lambda _: None)
        bodies: list[Zone | bytes | None] = [
            None if not alive[s] else (raw(s) or entries[s].zone)  # type: ignore[union-attr]
            for s in range(n)
        ]
        ids = [self._ids[s] if alive[s] else None for s in range(n)]
        res, ref, reach = self._facts
        f = self._base.flat
        tables = build.Tables(f.res, f.kstart, f.keys, f.istart, f.bstart, f.islots, f.bslots)
        later = [e.zone for e in entries[n:] if e is not None]
        return Packed(ids, bodies, res, ref, reach, self._circ[:n].copy(), tables, f.room, later)

    @classmethod
    def restore(cls, p: Packed, zone_of: Callable[[int], Zone]) -> Self:
        """The index ``p`` describes, without covering its base again (``zones.snapshot``): base slot s
        holds ``zone_of(s)``, called when the zone is first needed (``p.bodies`` is not read)."""
        index = cls()
        res, ref, reach = p.res, p.ref, p.reach

        def make(s: int) -> _Entry | None:
            if p.ids[s] is None:
                return None
            z = zone_of(s)
            shape = None if isinstance(z.geometry, Circle) else checked_shape(z)
            return _Entry(z, int(res[s]), (float(ref[s, 0]), float(ref[s, 1])), float(reach[s]), shape)

        def raw(s: int) -> bytes | None:
            b = p.bodies[s]
            return b if isinstance(b, bytes) else None

        entries = LazyEntries(len(p.ids), make, raw)
        index._install(entries, p.ids, p.circ, p.tables, p.room, (res, ref, reach))
        if p.later:
            index.add_many(p.later)
        return index

    def compact(self, workers: int | None = 1) -> None:
        """Re-pack every live zone into one base table (covers recomputed): reclaims the memory of
        removed zones and folds the runs in. Costs a build; for an owner to run when ``compaction_due``,
        off the request path (a changed zone never triggers it)."""
        self._build(list(self.zones()), workers)

    @property
    def compaction_due(self) -> bool:
        """Many runs (each one more table a lookup searches) or many masked entries in the base."""
        n = len(self._base.slots)  # the base's slots are 0..n-1
        dead = n - int(np.count_nonzero(self._alive[:n]))
        return len(self._runs) > MAX_RUNS or dead > max(1000, len(self._base.slots) // 10)

    # ------------------------------------------------------------------ incremental changes
    def _add(self, zone: Zone, covered: tuple[np.ndarray, np.ndarray] | None = None) -> int:
        res, ref, reach, shape = build.zone_facts(zone)
        if covered is None:
            covered = cover(zone, shape, res, ref)
        if zone.id in self._slot_of:
            self._kill(self._slot_of[zone.id])
        slot = len(self._entries)
        self._entries.append(_Entry(zone, res, ref, reach, shape, covered))
        self._slot_of[zone.id] = slot
        self._ensure(slot)
        self._alive[slot] = True
        self._ids[slot] = zone.id
        g = zone.geometry
        if isinstance(g, Circle):
            self._circ[slot] = _circle_rows(np.array([g.lat]), np.array([g.lng]), np.array([g.radius_m]))[0]
        self._shapes_stale.add(slot)
        return slot

    def _kill(self, slot: int) -> None:
        self._alive[slot] = False
        e = self._entries[slot]
        assert e is not None
        run = self._run_of.pop(slot, None)
        if run is not None:
            self._runs[run].dead_ids.add(e.zone.id)
        elif slot < len(self._base.slots):
            self._base.dead_ids.add(e.zone.id)
        if slot in self._pending:
            self._pending.remove(slot)
        self._entries[slot] = None
        self._shapes_stale.add(slot)

    def _pack(self, slots: list[int], into: int | None) -> None:
        """(Re-)pack run ``into`` (None: a new run) with its live zones and ``slots``."""
        if into is None:
            self._runs.append(_Part(_flat(_EMPTY), [], set()))
            into = len(self._runs) - 1
        part = self._runs[into]
        members = [s for s in part.slots if self._alive[s]] + slots
        if not members:
            self._runs[into] = _Part(_flat(_EMPTY), [], set())
            return
        parts = [self._entries[s].cover for s in members]  # type: ignore[union-attr]
        cells = [c for a, b in parts for c in (a, b)]  # type: ignore[misc]
        owners = [np.full(len(c), s, dtype=np.int32) for s in members for c in self._entries[s].cover]  # type: ignore[union-attr]
        inside = [np.full(len(c), k == 0) for a, b in parts for k, c in enumerate((a, b))]  # type: ignore[misc]
        tables = build.assemble(  # one part, one slice: a run is small
            [np.concatenate(cells)], [np.concatenate(owners)], [np.concatenate(inside)], slices=1
        )
        self._runs[into] = _Part(_flat(tables), members, set())
        for s in members:
            self._run_of[s] = into
        self._clear_runs = None

    def _settle(self) -> None:
        """Pack the pending zones into the last run once there are ``PENDING`` of them."""
        if len(self._pending) < PENDING:
            return
        last = len(self._runs) - 1
        fits = last >= 0 and len(self._runs[last].slots) + len(self._pending) <= RUN_ZONES
        self._pack(self._pending, last if fits else None)
        self._pending = []

    def add(self, zone: Zone) -> None:
        """Add ``zone`` (validated; raises ZoneError) or replace the one with its id; no full rebuild."""
        slot = self._add(zone)
        self._pending.append(slot)
        self.generation += 1
        self._settle()

    def add_many(self, zones: Iterable[Zone], workers: int | None = 1) -> None:
        """:meth:`add` of many zones: covers computed in bulk, packed into new runs of ``IMPORT_RUN_ZONES``.
        Validates every zone first: raises ZoneError (and changes nothing) if one is invalid."""
        batch = list({z.id: z for z in zones}.values())
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for _, got in build.covers(batch, workers):
            if got.errors:
                raise ZoneError(got.errors[0][1])
            by_zone = np.argsort(got.owner, kind="stable")  # a chunk lists its zones by cover group
            cells, owner, inside = got.cells[by_zone], got.owner[by_zone], got.interior[by_zone]
            split = np.searchsorted(owner, np.arange(len(got.facts.res) + 1))
            found += [
                (cells[a:b][inside[a:b]], cells[a:b][~inside[a:b]])
                for a, b in zip(split[:-1].tolist(), split[1:].tolist(), strict=True)
            ]
        slots = [self._add(z, c) for z, c in zip(batch, found, strict=True)]
        self.generation += 1
        for a in range(0, len(slots), IMPORT_RUN_ZONES):
            self._pack(slots[a : a + IMPORT_RUN_ZONES], None)

    def replace(self, zone: Zone) -> None:
        """Same as :meth:`add` for an existing id."""
        self.add(zone)

    def remove(self, zone_id: str) -> None:
        """Remove a zone; raises KeyError if unknown."""
        slot = self._slot_of.pop(zone_id)
        self._kill(slot)
        self.generation += 1

    def get(self, zone_id: str) -> Zone:
        return self._entry(zone_id).zone

    def _entry(self, zone_id: str) -> _Entry:
        e = self._entries[self._slot_of[zone_id]]
        assert e is not None
        return e

    def _shape(self, e: _Entry) -> BaseGeometry:
        """The zone's shape; a circle's is made on first use (it is needed only for exact tests)."""
        if e.shape is None:
            e.shape = zone_shape(e.zone)
            shapely.prepare(e.shape)
        return e.shape

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, zone_id: object) -> bool:
        return zone_id in self._slot_of

    def zones(self) -> Iterator[Zone]:
        return (e.zone for e in self._entries if e is not None)

    def resolution(self, zone_id: str) -> int:
        return self._entry(zone_id).res

    def cells(self, zone_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(interior, boundary) int64 H3 cells of a zone (recomputed for zones of the base table)."""
        e = self._entry(zone_id)
        if e.cover is not None:
            return e.cover
        return cover(e.zone, self._shape(e), e.res, e.ref)

    def _parts(self) -> list[_Part]:
        return [self._base, *self._runs]
