"""What the index keeps per zone slot (``Entry``), and a list of them decoded on first use (``LazyEntries``).

Why lazy: a process restoring a million zones from a snapshot (``zones.snapshot``) would spend most of its
start-up making Python objects (a ``Zone``, its geometry, an ``Entry``: ~10 us each). The lookup needs none
of them (it reads the snapshot's arrays); a zone is decoded when something asks for it (an exact test near
its edge, ``get``, a policy), then kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import overload

import numpy as np
from shapely.geometry.base import BaseGeometry

from zones.boundary import Rings
from zones.model import Zone


@dataclass(slots=True)
class Entry:
    zone: Zone
    res: int
    ref: tuple[float, float]
    reach_m: float  # distance from ref to the farthest point of the zone
    shape: BaseGeometry | None = None  # areas: always; circles: made on their first exact test
    cover: tuple[np.ndarray, np.ndarray] | None = None  # kept while the zone is pending or in a run
    rings: Rings | None = None  # an area's boundary arrays, made on first use (``signed_distance_m``)


_UNSET = object()


class LazyEntries:
    """A list of ``Entry | None`` by slot whose first ``n`` items are made by ``make(slot)`` on first access.

    Supports what ``ZoneIndex`` does with its entries: index, slice, assign, append, iterate, ``len``.
    ``raw(slot)`` gives ``raw_of(slot)`` (e.g. the zone's JSON) for an item not made yet, else None.
    """

    __slots__ = ("_items", "_make", "_raw")

    def __init__(
        self, n: int, make: Callable[[int], Entry | None], raw_of: Callable[[int], bytes | None]
    ) -> None:
        self._items: list[object] = [_UNSET] * n
        self._make = make
        self._raw = raw_of

    @overload
    def __getitem__(self, i: int) -> Entry | None: ...
    @overload
    def __getitem__(self, i: slice) -> list[Entry | None]: ...
    def __getitem__(self, i: int | slice) -> Entry | None | list[Entry | None]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self._items)))]
        e = self._items[i]
        if e is _UNSET:
            e = self._items[i] = self._make(i)
        return e  # type: ignore[return-value]

    def __setitem__(self, i: int, e: Entry | None) -> None:
        self._items[i] = e

    def append(self, e: Entry | None) -> None:
        self._items.append(e)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Entry | None]:
        return (self[i] for i in range(len(self._items)))

    def raw(self, i: int) -> bytes | None:
        """What the item was made from, if it was not made yet (a writer copies it as it is)."""
        return self._raw(i) if self._items[i] is _UNSET else None


__all__ = ["Entry", "LazyEntries"]
