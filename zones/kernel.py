"""The compiled inner loop of ``ZoneIndex.match_many`` (numba): cells -> (fix, zone) pairs.

Why compiled: a fix falls in ~10 zones (sparse) to ~70 (dense). In numpy every (fix, zone) pair costs
~30 ns of temporary arrays (CSR expansion, masks, gathers); here it costs a store, and the search for each
resolution's ancestor cell walks forward from the previous fix's position (fixes come sorted by cell, so
the ancestors are sorted too). Circle boundary hits are decided here with the chord test; what is left
(areas, and circle hits in the sub-metre band around the 128-gon) goes back to shapely in batches.

Tables are flattened over resolutions: rows ``kstart[r]:kstart[r+1]`` of ``head`` are the sorted cells of
the r-th resolution in use, each row ``(cell, i, b)``: ``islots[i:next row's i]`` are the zones the cell is
interior to, ``bslots[b:next row's b]`` those it is a boundary cell of (one more row closes the table), and
``bdata`` holds, beside each boundary entry, its circle's centre as a unit vector and its squared chord
margins (``(0, 0, 0, -1, inf)`` for an area). Keeping what a lookup reads next to each other, in the order
the sorted fixes read it, avoids a cache miss per (fix, zone).
"""

from __future__ import annotations

import numpy as np
from numba import njit

RES_SHIFT = 52


def res_masks(res: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keep, set) int64 masks turning a finer cell into its ancestor at each resolution of ``res``."""
    low = np.array([(1 << ((15 - int(r)) * 3)) - 1 for r in res], dtype=np.int64)
    keep = ~((np.int64(0xF) << RES_SHIFT) | low)
    return keep, (res.astype(np.int64) << RES_SHIFT) | low


@njit(cache=True, nogil=True)
def lookup(  # type: ignore[no-untyped-def]  # numba compiles it for the arrays and scalars of each call
    fine, order, begin, cursor, ux, uy, uz, keep, setb, kstart, head, islots, bslots, bdata, alive,
    filter_dead, room, out_pos, out_slot, chk_pos, chk_slot,
):
    """Pairs for fixes ``begin:`` in cell order, written to the outputs.

    ``fine`` (ascending) and ``ux, uy, uz`` (unit vectors) are the fixes' cells and positions in that
    order, ``order`` their positions in the caller's arrays (what ``pos`` reports).

    Decided pairs go to ``out_pos``/``out_slot``, pairs shapely must confirm to ``chk_pos``/``chk_slot``;
    ``slot`` are zone slots. Stops before a fix that might not fit
    (``room``: the most entries one fix can produce) and returns (pairs, checks, next fix): the caller
    resumes with fresh outputs and the same ``cursor`` (the arrays are never reallocated in here, which
    keeps the loop free of reference counting).
    """
    n = order.shape[0]
    n_res = keep.shape[0]
    m = 0
    c = 0
    cap_out = out_pos.shape[0] - room
    cap_chk = chk_pos.shape[0] - room
    for j in range(begin, n):
        if m > cap_out or c > cap_chk:
            return m, c, j
        f = order[j]
        cell = fine[j]
        for r in range(n_res):
            q = (cell & keep[r]) | setb[r]
            lo = cursor[r]
            end = kstart[r + 1]
            if lo < end and head[lo, 0] < q:  # gallop forward, then bisect
                step = 1
                while lo + step < end and head[lo + step, 0] < q:
                    lo += step
                    step *= 2
                hi = min(lo + step, end)
                lo += 1
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if head[mid, 0] < q:
                        lo = mid + 1
                    else:
                        hi = mid
                cursor[r] = lo
            if lo == end or head[lo, 0] != q:
                continue
            for e in range(head[lo, 1], head[lo + 1, 1]):
                s = islots[e]
                if filter_dead and not alive[s]:
                    continue
                out_pos[m] = f
                out_slot[m] = s
                m += 1
            for e in range(head[lo, 2], head[lo + 1, 2]):
                s = bslots[e]
                if filter_dead and not alive[s]:
                    continue
                cin2 = bdata[e, 3]
                if cin2 >= 0.0:
                    dx, dy, dz = ux[j] - bdata[e, 0], uy[j] - bdata[e, 1], uz[j] - bdata[e, 2]
                    c2 = dx * dx + dy * dy + dz * dz
                    if c2 < cin2:
                        out_pos[m] = f
                        out_slot[m] = s
                        m += 1
                        continue
                    if c2 > bdata[e, 4]:
                        continue
                chk_pos[c] = f
                chk_slot[c] = s
                c += 1
    return m, c, n
