"""The bulk build (``zones.build``): chunked covers and sliced tables give exactly the cells and tables of
the one-zone-at-a-time reference (``cells.cover``, then one sort of every entry), whatever the chunking,
the number of worker processes or of key slices."""

from __future__ import annotations

import numpy as np
import pytest

from tests.zones.shapes import circle, polygon
from zones import build
from zones.cells import circle_covers, cover
from zones.errors import ZoneError
from zones.geometry import reference_latlng, zone_shape
from zones.index import ZoneIndex
from zones.sizing import choose_resolution, zone_size_m


def mixed_zones(n: int, seed: int = 5) -> list:
    """Walking and driving circles and polygons around Paris, plus zones on the antimeridian."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        lat, lng = 48.7 + rng.uniform(0, 0.3), 2.2 + rng.uniform(0, 0.4)
        kind = i % 10
        if kind < 7:
            out.append(circle(f"w{i}", lat, lng, 397))
        elif kind < 9:
            out.append(circle(f"d{i}", lat, lng, float(rng.choice([1_543.0, 4_861.0]))))
        else:
            out.append(polygon(f"p{i}", lat, lng, float(rng.uniform(150, 1500)), rng, hole=i % 20 == 9))
    out += [circle("am", -16.0, 179.999, 397), circle("am2", -16.01, -180.0, 3000)]
    return out


def reference_entries(zones: list) -> set[tuple[int, str, bool]]:
    """(cell, zone id, interior) of every zone, covered one by one with ``cells.cover``."""
    out = set()
    for z in zones:
        shape = zone_shape(z)
        res = choose_resolution(zone_size_m(z), area=z.geometry.__class__.__name__ == "Area")
        inside, edge = cover(z, shape, res, reference_latlng(z, shape))
        out |= {(c, z.id, True) for c in inside.tolist()} | {(c, z.id, False) for c in edge.tolist()}
    return out


def table_entries(index: ZoneIndex) -> set[tuple[int, str, bool]]:
    return entries_of(index._base.flat, index._ids)


def entries_of(t, ids) -> set[tuple[int, str, bool]]:
    out = set()
    for row in range(len(t.keys) - 1):
        cell = int(t.keys[row])
        (i0, i1), (b0, b1) = t.istart[row : row + 2].tolist(), t.bstart[row : row + 2].tolist()
        out |= {(cell, ids[s], True) for s in t.islots[i0:i1].tolist()}
        out |= {(cell, ids[s], False) for s in t.bslots[b0:b1].tolist()}
    return out


@pytest.mark.parametrize("per_call", [1, 7, 2048])
def test_chunked_circle_covers_equal_the_per_zone_cover(per_call):
    zones = [z for z in mixed_zones(60) if z.id.startswith("w")]
    got = circle_covers([z.geometry for z in zones], 11, per_call=per_call)
    for z, c in zip(zones, got, strict=True):
        want = cover(z, zone_shape(z), 11, reference_latlng(z))
        assert c is not None
        assert sorted(c[0].tolist()) == sorted(want[0].tolist())
        assert sorted(c[1].tolist()) == sorted(want[1].tolist())


@pytest.mark.parametrize(("chunk", "slices"), [(3, 1), (17, 5), (4096, 64)])
def test_chunked_build_equals_the_one_zone_at_a_time_reference(chunk, slices):
    zones = mixed_zones(120)
    parts = [(a, got) for a, got in build.covers(zones, workers=1, chunk=chunk)]
    cells = [got.cells for _, got in parts]
    slots = [got.owner + a for a, got in parts]
    inside = [got.interior for _, got in parts]
    t = build.assemble(cells, slots, inside, slices=slices)
    assert (np.diff(t.keys) > 0).all(), "keys sorted and unique"
    assert entries_of(t, [z.id for z in zones]) == reference_entries(zones)
    res_of = (t.keys[:-1] >> 52) & 0xF
    for r, res in enumerate(t.res.tolist()):
        assert (res_of[t.kstart[r] : t.kstart[r + 1]] == res).all()


def test_an_index_built_by_two_worker_processes_has_the_reference_tables():
    zones = mixed_zones(300)
    index = ZoneIndex(zones, workers=2)
    assert table_entries(index) == reference_entries(zones)
    one = ZoneIndex(zones, workers=1)
    assert np.array_equal(index._base.flat.keys, one._base.flat.keys)


def test_build_reports_the_first_invalid_zone_and_keeps_the_last_of_a_repeated_id():
    zones = mixed_zones(20)
    with pytest.raises(ZoneError, match="radius"):
        ZoneIndex([*zones, circle("bad", 48.8, 2.3, 5.0)])
    index = ZoneIndex([*zones, circle("w0", 48.9, 2.4, 800)])
    assert index.get("w0").geometry.radius_m == 800 and len(index) == len(zones)


def test_the_kernels_search_finds_what_searchsorted_finds():
    from zones.kernel import FENCE, _next_at_least

    rng = np.random.default_rng(11)
    for size in (1, 5, FENCE - 1, FENCE, 3 * FENCE + 7, 5000):
        keys = np.append(np.unique(rng.integers(0, 10 * size + 10, size)), np.iinfo(np.int64).max)
        fence = np.ascontiguousarray(keys[::FENCE])
        n = len(keys) - 1
        for _ in range(300):
            lo = int(rng.integers(0, n))
            end = int(rng.integers(lo + 1, n + 1))
            q = int(keys[lo]) + int(rng.integers(1, 12 * size + 20))
            want = min(int(np.searchsorted(keys[lo + 1 : end], q)) + lo + 1, end)
            assert _next_at_least(keys, fence, lo, end, q) == want


def test_changes_go_to_runs_never_to_the_base_and_stay_exact_until_compacted():
    from tests.zones.test_index_exact import assert_exact
    from zones.packing import PENDING, RUN_ZONES

    zones = mixed_zones(150)
    index = ZoneIndex(zones)
    base = index._base
    current = {z.id: z for z in zones}
    rng = np.random.default_rng(9)
    for i in range(PENDING + 5):  # one run packed, some pending
        z = circle(f"a{i}", 48.7 + rng.uniform(0, 0.3), 2.2 + rng.uniform(0, 0.4), 397)
        index.add(z)
        current[z.id] = z
    for i in range(0, 40, 3):  # removals in the base, in the run and pending
        for zid in (f"w{i}", f"a{i}"):
            if zid in current:
                index.remove(zid)
                del current[zid]
    index.replace(moved := circle("a1", 48.8, 2.3, 1543))
    current["a1"] = moved
    imported = mixed_zones(RUN_ZONES + 30, seed=6)
    imported = [type(z)(id=f"i{z.id}", name=z.name, geometry=z.geometry) for z in imported]
    index.add_many(imported)
    current.update({z.id: z for z in imported})
    assert index._base is base and len(index._runs) >= 2  # single changes, then the import
    lats, lngs = rng.uniform(48.69, 49.01, 20_000), rng.uniform(2.19, 2.61, 20_000)
    assert_exact(index, list(current.values()), lats, lngs)
    assert sorted(z.id for z in index.zones()) == sorted(current)
    index.compact()
    assert index._base is not base and not index._runs and not index.compaction_due
    assert_exact(index, list(current.values()), lats, lngs)


def test_match_on_a_base_too_large_for_dicts_asks_the_kernel_and_agrees(monkeypatch):
    import zones.index as zi
    from tests.zones.shapes import truth_pairs

    zones = mixed_zones(100)
    index = ZoneIndex(zones)
    monkeypatch.setattr(zi, "SCALAR_MAX_KEYS", 0)  # the branch a million zones take, on a small index
    rng = np.random.default_rng(2)
    lats, lngs = rng.uniform(48.69, 49.01, 400), rng.uniform(2.19, 2.61, 400)
    truth = truth_pairs(zones, lats, lngs)
    for i in range(len(lats)):
        assert sorted(index.match(float(lats[i]), float(lngs[i]))) == sorted(z for j, z in truth if j == i)
    assert index._base.scalar is None  # no dicts were built
