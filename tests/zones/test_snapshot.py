"""A snapshot file gives back the index it was written from: the same zones, the same base tables (not
covered again), the zones changed since re-added, removed ones gone; a foreign or damaged file is refused."""

from __future__ import annotations

import numpy as np
import pytest

from tests.zones.shapes import circle
from tests.zones.test_build import mixed_zones
from tests.zones.test_index_exact import assert_exact
from zones.index import ZoneIndex
from zones.snapshot import SnapshotError, read_snapshot, write_snapshot


def test_a_snapshot_restores_the_index_with_its_changes(tmp_path):
    zones = mixed_zones(200)
    index = ZoneIndex(zones)
    index.remove("w0")
    index.remove("p19")
    index.add(circle("new", 48.8, 2.3, 397))
    index.replace(circle("w1", 48.85, 2.35, 800))
    index.add_many([circle(f"imp{i}", 48.7 + i * 0.001, 2.3, 397) for i in range(40)])
    path = tmp_path / "zones.npz"
    write_snapshot(index, path, meta={"watermark": "x"})
    back, meta = read_snapshot(path)
    assert meta == {"watermark": "x"}
    assert back._base.flat.keys.base is not None  # the tables are the mapped file's, not copies
    assert sorted(z.id for z in back.zones()) == sorted(z.id for z in index.zones())
    assert back.get("w1").geometry.radius_m == 800 and "w0" not in back and "p19" not in back
    assert np.array_equal(back._base.flat.keys, index._base.flat.keys)  # the base was not re-covered
    rng = np.random.default_rng(4)
    lats, lngs = rng.uniform(48.69, 49.01, 30_000), rng.uniform(2.19, 2.61, 30_000)
    assert_exact(back, list(index.zones()), lats, lngs)
    back.remove("w2")  # and it stays an ordinary index
    back.add(circle("w2", 48.9, 2.4, 397))
    assert_exact(back, list(back.zones()), lats[:5000], lngs[:5000])


def test_a_damaged_or_foreign_file_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a snapshot")
    with pytest.raises(SnapshotError):
        read_snapshot(bad)
    other = tmp_path / "other.npz"
    write_snapshot(ZoneIndex(mixed_zones(20)), other)
    data = other.read_bytes()
    other.write_bytes(data.replace(b'"format": 2', b'"format": 9', 1))
    with pytest.raises(SnapshotError, match="format 9"):
        read_snapshot(other)
    short = tmp_path / "short.npz"
    short.write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotError):
        read_snapshot(short)
    with pytest.raises(SnapshotError):
        read_snapshot(tmp_path / "missing.npz")


def test_a_restored_index_decodes_only_the_zones_it_needs_and_writes_the_others_as_read(tmp_path):
    from zones.entries import _UNSET

    zones = mixed_zones(300)
    write_snapshot(ZoneIndex(zones), tmp_path / "a.snap")
    back, _ = read_snapshot(tmp_path / "a.snap")

    def made() -> int:
        return sum(1 for x in back._entries._items if x is not _UNSET)

    rng = np.random.default_rng(9)
    lats, lngs = rng.uniform(48.69, 49.01, 20_000), rng.uniform(2.19, 2.61, 20_000)
    found = back.match_many(lats, lngs)
    assert len(found.positions) > 1000 and made() < len(zones) // 2  # only zones met near their edge
    write_snapshot(back, tmp_path / "b.snap")
    assert made() < len(zones) // 2  # the JSON of the others was copied
    again, _ = read_snapshot(tmp_path / "b.snap")
    assert_exact(again, zones, lats, lngs)
