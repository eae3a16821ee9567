"""The compiled lookup's fast paths agree with their readable twins: the blocked ``kernel.lookup`` with the
one-fix-at-a-time ``kernel.lookup_reference`` (same pairs, outputs full or not, dead zones filtered), and
the radix ``kernel.sorted_cells`` with a stable ``np.argsort``."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.zones.test_build import mixed_zones
from zones import kernel
from zones.fix_cells import FINE_RES, cells_at
from zones.index import ZoneIndex

_INDEX = ZoneIndex(mixed_zones(300))
for _zid in ("w3", "d7", "p9"):
    _INDEX.remove(_zid)


def _run(fn, fine, order, lats, lngs, size: int, dead: bool) -> tuple[set, set]:
    """Every pair ``fn`` gives, resuming with fresh outputs of ``size`` entries as the index does."""
    f = _INDEX._base.flat
    cursor = f.kstart[:-1].copy()
    begin, pairs, checks = 0, set(), set()
    while begin < len(order):
        pos, slot = np.empty(size + f.room, np.int64), np.empty(size + f.room, np.int64)
        cp, cs = np.empty(size + f.room, np.int64), np.empty(size + f.room, np.int64)
        m, c, nxt = fn(
            fine, order, begin, cursor, lats, lngs, f.keep, f.setb, f.kstart, f.keys, f.fence, f.istart,
            f.bstart, f.islots, f.bslots, _INDEX._circ, _INDEX._alive, dead, f.room, pos, slot, cp, cs,
        )
        assert nxt > begin or m == c == 0
        begin = nxt
        pairs |= set(zip(pos[:m].tolist(), slot[:m].tolist(), strict=True))
        checks |= set(zip(cp[:c].tolist(), cs[:c].tolist(), strict=True))
    return pairs, checks


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 3000),
    size=st.sampled_from([1, 7, 50, 100_000]),
    dead=st.booleans(),
    spread=st.sampled_from([0.002, 0.05, 0.4]),
)
def test_the_blocked_lookup_gives_the_reference_pairs(seed, n, size, dead, spread):
    rng = np.random.default_rng(seed)
    lats = 48.85 + rng.normal(0, spread, n)
    lngs = np.where(rng.uniform(size=n) < 0.02, 180.0, 2.35 + rng.normal(0, spread, n))  # a few on the cut
    order, fine = kernel.sorted_cells(cells_at(lats, lngs, FINE_RES))
    want = _run(kernel.lookup_reference, fine, order, lats, lngs, size, dead)
    got = _run(kernel.lookup, fine, order, lats, lngs, size, dead)
    assert got == want
    assert want[0] or n < 50 or spread > 0.1  # the sample meets zones


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), n=st.integers(0, 5000), spread=st.sampled_from([1e-5, 0.01, 1.0, 60.0])
)
def test_the_radix_sort_orders_cells_like_a_stable_argsort(seed, n, spread):
    rng = np.random.default_rng(seed)
    lats = np.clip(rng.normal(10, spread, n), -90, 90)
    lngs = np.clip(rng.normal(-170, 3 * spread, n), -180, 180)  # base cells on both sides of bit 51
    cells = cells_at(lats, lngs, FINE_RES)
    order, fine = kernel.sorted_cells(cells)
    want = np.argsort(cells.view(np.uint64), kind="stable")
    assert np.array_equal(order, want)
    assert np.array_equal(fine, cells[want])
