"""The compiled inner loop of ``ZoneIndex.match_many`` (numba): cells -> (fix, zone) pairs.

Why compiled: a fix falls in ~10 zones (sparse) to ~70 (dense). In numpy every (fix, zone) pair costs
~30 ns of temporary arrays (CSR expansion, masks, gathers); here it costs a store, and the search for each
resolution's ancestor cell walks forward from the previous fix's position (fixes come sorted by cell, so
the ancestors are sorted too). Circle boundary hits are decided here with the chord test; what is left
(areas, and circle hits in the sub-metre band around the 128-gon) goes back to shapely in batches.

Tables are flattened over resolutions: rows ``kstart[r]:kstart[r+1]`` of ``head`` are the sorted cells of
the r-th resolution in use, each row ``(cell, i, b)``: ``islots[i:next row's i]`` are the zones the cell is
interior to, ``bslots[b:next row's b]`` those it is a boundary cell of (one more row closes the table), and
``circ`` holds, per zone slot, its circle's centre as a unit vector and its squared chord margins
(``(0, 0, 0, -1, inf)`` for an area). Slots are numbered in the order of the zones' H3 cells
(``zones.build.spatial_order``), so the fixes, read in cell order, read ``circ`` mostly in order too; a copy
beside each boundary entry would be faster still but costs 40 bytes an entry (3.6 GB at a million zones).
"""

from __future__ import annotations

import numpy as np
from numba import njit

RES_SHIFT = 52
FENCE_BITS = 6
FENCE = 1 << FENCE_BITS  # keys per block of the search's first level


def res_masks(res: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keep, set) int64 masks turning a finer cell into its ancestor at each resolution of ``res``."""
    low = np.array([(1 << ((15 - int(r)) * 3)) - 1 for r in res], dtype=np.int64)
    keep = ~((np.int64(0xF) << RES_SHIFT) | low)
    return keep, (res.astype(np.int64) << RES_SHIFT) | low


@njit(cache=True, nogil=True)
def lookup_reference(  # type: ignore[no-untyped-def]  # numba compiles it for the arrays and scalars of each call
    fine, order, begin, cursor, lats, lngs, keep, setb, kstart, keys, fence, istart, bstart, islots, bslots,
    circ, alive, filter_dead, room, out_pos, out_slot, chk_pos, chk_slot,
):
    """Pairs for fixes ``begin:`` in cell order, written to the outputs: one fix at a time, the readable
    twin of :func:`lookup` (``tests/zones/test_kernel.py`` checks they agree).

    ``fine`` (ascending) are the fixes' cells in that order, ``order`` their positions in the caller's
    arrays ``lats, lngs`` (degrees; what ``pos`` reports). A fix's unit vector is computed at its first
    circle boundary hit (most fixes have none); on the antimeridian (|lng| = 180, the cut of split zones)
    the chord test does not hold and every boundary hit goes to shapely.

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
        fx = 2.0  # the fix's unit vector: not computed yet
        fy = fz = 0.0
        for r in range(n_res):
            q = (cell & keep[r]) | setb[r]
            lo = cursor[r]
            end = kstart[r + 1]
            if lo < end and keys[lo] < q:
                lo = _next_at_least(keys, fence, lo, end, q)
                cursor[r] = lo
            if lo == end or keys[lo] != q:
                continue
            for e in range(istart[lo], istart[lo + 1]):
                s = islots[e]
                if filter_dead and not alive[s]:
                    continue
                out_pos[m] = f
                out_slot[m] = s
                m += 1
            for e in range(bstart[lo], bstart[lo + 1]):
                s = bslots[e]
                if filter_dead and not alive[s]:
                    continue
                cin2 = circ[s, 3]
                if cin2 >= 0.0:
                    if fx == 2.0:
                        lng = lngs[f]
                        if lng == 180.0 or lng == -180.0:
                            fx = fy = fz = np.nan  # NaN fails both tests below: shapely decides
                        else:
                            p, g = np.radians(lats[f]), np.radians(lng)
                            fx, fy, fz = np.cos(p) * np.cos(g), np.cos(p) * np.sin(g), np.sin(p)
                    dx, dy, dz = fx - circ[s, 0], fy - circ[s, 1], fz - circ[s, 2]
                    c2 = dx * dx + dy * dy + dz * dz
                    if c2 < cin2:
                        out_pos[m] = f
                        out_slot[m] = s
                        m += 1
                        continue
                    if c2 > circ[s, 4]:
                        continue
                chk_pos[c] = f
                chk_slot[c] = s
                c += 1
    return m, c, n


SORT_MAX = 1 << 24  # fixes per call of :func:`sorted_cells` (its index field)


@njit(cache=True, nogil=True)
def sorted_cells(cells):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """(order, cells[order]): H3 cells of resolution 11 (the lookup's) sorted ascending, stably, by an LSD
    radix sort; ``len(cells) < SORT_MAX``.

    Why: ``np.argsort`` plus the gather cost ~10 % of ``match_many``; this costs ~1/15 of that. A res-11
    cell has 40 varying bits (base cell and 11 digits: bits 12-51; the mode and resolution above are fixed,
    the unused digits below are all ones), packed above a 24-bit index and sorted in 4 passes of 11 bits.
    """
    n = cells.shape[0]
    a = np.empty(n, np.int64)
    for i in range(n):
        a[i] = (((cells[i] >> 12) & 0xFFFFFFFFFF) << 24) | i
    b = np.empty(n, np.int64)
    count = np.empty(2048, np.int64)
    for shift in (24, 35, 46, 57):  # the last digit's sign extension keeps the unsigned order
        count[:] = 0
        for i in range(n):
            count[(a[i] >> shift) & 2047] += 1
        if count.max() == n:  # every key has the same digit here
            continue
        total = 0
        for d in range(2048):
            k = count[d]
            count[d] = total
            total += k
        for i in range(n):
            d = (a[i] >> shift) & 2047
            b[count[d]] = a[i]
            count[d] += 1
        a, b = b, a
    order = np.empty(n, np.int64)
    fine = np.empty(n, np.int64)
    for i in range(n):
        order[i] = a[i] & 0xFFFFFF
        fine[i] = cells[order[i]]
    return order, fine


BLOCK = 128  # fixes per block of :func:`lookup`


@njit(cache=True, nogil=True)
def lookup(  # type: ignore[no-untyped-def]  # numba compiles it for the arrays and scalars of each call
    fine, order, begin, cursor, lats, lngs, keep, setb, kstart, keys, fence, istart, bstart, islots, bslots,
    circ, alive, filter_dead, room, out_pos, out_slot, chk_pos, chk_slot,
):
    """:func:`lookup_reference` (same arguments, same pairs, possibly in another order), in blocks of
    ``BLOCK`` fixes, each in phases: the searches, then the CSR offsets of every hit, then their zone
    slots, then the chord tests of the boundary hits.

    Why: after the search, a fix costs a chain of cache misses (offsets -> slots -> circle row), ~300 ns
    when taken one fix at a time. Within a phase the loads of different fixes do not depend on each
    other, so the processor overlaps their misses (bench/bench_scale.py: the lookup ~2x faster at 100k
    zones). Stopping early (outputs full) rewinds ``cursor`` to the first fix not done.
    """
    n = order.shape[0]
    n_res = keep.shape[0]
    m = 0
    c = 0
    cap_out = out_pos.shape[0] - room
    cap_chk = chk_pos.shape[0] - room
    los = np.empty((BLOCK, n_res), np.int64)  # each fix's search result per resolution
    hit_j = np.empty(BLOCK * n_res, np.int64)  # the hits of a block: fix, key, its offsets
    hit_k = np.empty(BLOCK * n_res, np.int64)
    offs = np.empty((BLOCK * n_res, 4), np.int64)
    b_cap = BLOCK * room
    b_fix = np.empty(b_cap, np.int64)  # boundary candidates: fix (in cell order), zone slot
    b_slot = np.empty(b_cap, np.int64)
    j0 = begin
    while j0 < n:
        j1 = min(j0 + BLOCK, n)
        h = 0
        for j in range(j0, j1):  # 1. searches (sequential: each starts where the previous fix's ended)
            cell = fine[j]
            for r in range(n_res):
                q = (cell & keep[r]) | setb[r]
                lo = cursor[r]
                end = kstart[r + 1]
                if lo < end and keys[lo] < q:
                    lo = _next_at_least(keys, fence, lo, end, q)
                    cursor[r] = lo
                los[j - j0, r] = lo
                if lo < end and keys[lo] == q:
                    hit_j[h] = j
                    hit_k[h] = lo
                    h += 1
        for i in range(h):  # 2. offsets (independent loads)
            k = hit_k[i]
            offs[i, 0] = istart[k]
            offs[i, 1] = istart[k + 1]
            offs[i, 2] = bstart[k]
            offs[i, 3] = bstart[k + 1]
        nb = 0
        last = -1
        for i in range(h):  # 3. slots: interior ones are pairs, boundary ones candidates
            j = hit_j[i]
            if j != last:  # a new fix: stop here if it might not fit
                last = j
                if m + nb > cap_out or c + nb > cap_chk or nb + room > b_cap:
                    m, c = _chord_tests(b_fix, b_slot, nb, order, lats, lngs, circ, out_pos, out_slot,
                                        chk_pos, chk_slot, m, c)
                    nb = 0
                    if m > cap_out or c > cap_chk:
                        for r in range(n_res):
                            cursor[r] = los[j - j0, r]
                        return m, c, j
            f = order[j]
            for e in range(offs[i, 0], offs[i, 1]):
                s = islots[e]
                if filter_dead and not alive[s]:
                    continue
                out_pos[m] = f
                out_slot[m] = s
                m += 1
            for e in range(offs[i, 2], offs[i, 3]):
                s = bslots[e]
                if filter_dead and not alive[s]:
                    continue
                b_fix[nb] = j
                b_slot[nb] = s
                nb += 1
        m, c = _chord_tests(b_fix, b_slot, nb, order, lats, lngs, circ, out_pos, out_slot, chk_pos, chk_slot,
                            m, c)
        j0 = j1
    return m, c, n


@njit(cache=True, nogil=True)
def _chord_tests(  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    b_fix, b_slot, nb, order, lats, lngs, circ, out_pos, out_slot, chk_pos, chk_slot, m, c
):
    """Phase 4 of :func:`lookup`: decide boundary candidates (fix in cell order, slot) by the chord test,
    or send them to shapely; returns the new output counts."""
    last = -1
    fx = fy = fz = 0.0
    for i in range(nb):
        s = b_slot[i]
        f = order[b_fix[i]]
        cin2 = circ[s, 3]
        if cin2 >= 0.0:
            if f != last:
                last = f
                lng = lngs[f]
                if lng == 180.0 or lng == -180.0:
                    fx = fy = fz = np.nan  # the cut of split zones: NaN fails both tests, shapely decides
                else:
                    p, g = np.radians(lats[f]), np.radians(lng)
                    fx, fy, fz = np.cos(p) * np.cos(g), np.cos(p) * np.sin(g), np.sin(p)
            dx, dy, dz = fx - circ[s, 0], fy - circ[s, 1], fz - circ[s, 2]
            c2 = dx * dx + dy * dy + dz * dz
            if c2 < cin2:
                out_pos[m] = f
                out_slot[m] = s
                m += 1
                continue
            if c2 > circ[s, 4]:
                continue
        chk_pos[c] = f
        chk_slot[c] = s
        c += 1
    return m, c


@njit(cache=True, nogil=True, inline="always")
def _next_at_least(keys, fence, lo, end, q):  # type: ignore[no-untyped-def]  # pragma: no cover - compiled
    """The first index in ``lo + 1:end`` whose key is >= q (``end`` if none), knowing keys[lo] < q.

    Nearby keys (the next fix is often in the same or the next cell) are read in order; farther ones by
    galloping over ``fence`` (every FENCE-th key: small, stays in cache), then bisecting one block of
    ``keys``: a few cache lines of the large array per search instead of one per step."""
    near = min(lo + 17, end)
    i = lo + 1
    while i < near and keys[i] < q:
        i += 1
    if i < near or near == end:
        return i
    lo = near - 1
    nf = fence.shape[0]
    fi = lo >> FENCE_BITS  # fence[fi] <= keys[lo] < q
    step = 1
    while fi + step < nf and fence[fi + step] < q:
        fi += step
        step *= 2
    a, b = fi + 1, min(fi + step, nf)  # fence[a - 1] < q, and fence[b] >= q unless b == nf
    while a < b:
        mid = (a + b) >> 1
        if fence[mid] < q:
            a = mid + 1
        else:
            b = mid
    hi = min(end, a << FENCE_BITS)  # keys[a * FENCE] = fence[a] >= q
    lo = max(lo + 1, (a - 1) << FENCE_BITS)
    if lo > hi:
        return hi
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < q:
            lo = mid + 1
        else:
            hi = mid
    return lo
