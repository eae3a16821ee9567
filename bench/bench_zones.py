"""Zone index benchmark: exact H3 ZoneIndex vs a shapely STRtree and a bare h3 loop.

    .venv/bin/python -m bench.bench_zones            # full: 1,000,000 fixes, dense and sparse workloads
    .venv/bin/python -m bench.bench_zones --quick    # ~10x smaller, well under a minute

Workloads over the Île-de-France box (48.6–49.1 N, 2.0–2.7 E), stores clustered in towns:
* dense:  8,000 walking zones (5 min walk ≈ 397 m), 2,000 rural driving zones (5 min ≈ 4.9 km),
          500 polygons (star-shaped, 150–1,500 m) — a fix falls in ~50 zones;
* sparse: the same with 200 driving zones — a fix falls in ~8 zones.
Fixes: 1,000,000 clustered near stores (Gaussian, σ = 300 m, around a random store).

Printed per workload: build time, index memory (tracemalloc peak/current of the build, and RSS delta),
match_many fixes/s (batches of 100,000; wall and CPU time; pairs as zone indices, like STRtree's), the
same with every pair's zone-id string materialised, the scalar dicts ``match`` builds on its first call
(time, memory), match fixes/s (Python loop), mismatches against shapely on a 100,000-fix sample, STRtree
``query(points, predicate="within")`` fixes/s, bare ``latlng_to_cell`` loop. The numba kernel is
compiled (or loaded from its cache) by the warm-up.
"""

from __future__ import annotations

import argparse
import gc
import math
import time
import tracemalloc

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i

from zones.geometry import M_PER_DEG, zone_shape
from zones.index import ZoneIndex
from zones.model import Area, Zone
from zones.sizing import size_zone

BOX = (48.6, 49.1, 2.0, 2.7)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def make_stores(rng: np.random.Generator, n: int) -> np.ndarray:
    """Store positions clustered in ~150 towns inside the box."""
    towns = np.column_stack(
        [rng.uniform(BOX[0] + 0.03, BOX[1] - 0.03, 150), rng.uniform(BOX[2] + 0.04, BOX[3] - 0.04, 150)]
    )
    t = towns[rng.integers(0, len(towns), n)]
    spread = rng.normal(0, 1, (n, 2)) * np.array([1500 / M_PER_DEG, 1500 / (M_PER_DEG * 0.66)])
    return np.clip(t + spread, [BOX[0], BOX[2]], [BOX[1], BOX[3]])


def star(lat: float, lng: float, r: float, rng: np.random.Generator) -> dict:
    n = int(rng.integers(5, 24))
    th = (np.arange(n) + rng.uniform(0, 0.8, n)) * 2 * math.pi / n
    rr = rng.uniform(0.6, 1.0, n) * r
    kx = M_PER_DEG * math.cos(math.radians(lat))
    pts = [
        [lng + float(a * math.sin(t)) / kx, lat + float(a * math.cos(t)) / M_PER_DEG]
        for t, a in zip(th, rr, strict=True)
    ]
    return {"type": "Polygon", "coordinates": [pts + [pts[0]]]}


def workload(rng: np.random.Generator, walk: int, drive: int, polys: int) -> tuple[list[Zone], np.ndarray]:
    stores = make_stores(rng, walk + drive + polys)
    zones = []
    for i, (lat, lng) in enumerate(stores[:walk]):
        zones.append(
            Zone(id=f"walk-{i}", name="w", geometry=size_zone(lat, lng, "walk"), profile="walk", minutes=5)
        )
    for i, (lat, lng) in enumerate(stores[walk : walk + drive]):
        zones.append(
            Zone(
                id=f"drive-{i}", name="d", geometry=size_zone(lat, lng, "drive_rural"), profile="drive_rural"
            )
        )
    for i, (lat, lng) in enumerate(stores[walk + drive :]):
        zones.append(
            Zone(id=f"poly-{i}", name="p", geometry=Area(star(lat, lng, rng.uniform(150, 1500), rng)))
        )
    return zones, stores


def fixes(rng: np.random.Generator, stores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    s = stores[rng.integers(0, len(stores), n)]
    lat = s[:, 0] + rng.normal(0, 300, n) / M_PER_DEG
    lng = s[:, 1] + rng.normal(0, 300, n) / (M_PER_DEG * math.cos(math.radians(48.85)))
    return lat, lng


def run(
    name: str, zones: list[Zone], stores: np.ndarray, n_fixes: int, n_sample: int, n_single: int, rng
) -> None:
    print(f"\n== {name}: {len(zones):,} zones, {n_fixes:,} fixes")
    lats, lngs = fixes(rng, stores, n_fixes)
    gc.collect()
    r0 = rss_mb()
    t, c = time.perf_counter(), time.process_time()
    index = ZoneIndex(zones)
    build_s, build_cpu = time.perf_counter() - t, time.process_time() - c
    rss = rss_mb() - r0
    del index
    gc.collect()
    tracemalloc.start()
    index = ZoneIndex(zones)
    cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n_cells = sum(len(a) + len(b) for a, b in (index.cells(z.id) for z in zones))
    res_used = sorted({index.resolution(z.id) for z in zones})
    print(
        f"build            {build_s:8.2f} s wall, {build_cpu:.2f} s CPU   cells {n_cells:,}"
        f"   resolutions {res_used}"
    )
    print(
        f"index memory     {cur / 1e6:8.1f} MB held (tracemalloc), peak {peak / 1e6:.1f} MB,"
        f" RSS delta {rss:.1f} MB"
    )

    batch = 100_000
    index.match_many(lats[:1000], lngs[:1000])  # warm-up
    t, c = time.perf_counter(), time.process_time()
    pairs = 0
    for a in range(0, n_fixes, batch):
        found = index.match_many(lats[a : a + batch], lngs[a : a + batch])
        pairs += len(found.positions)
    mm_s, mm_cpu = time.perf_counter() - t, time.process_time() - c
    mm_rate = n_fixes / mm_s
    print(
        f"match_many (CPU) {n_fixes / mm_cpu:12,.0f} fixes/s of CPU time (same run; wall differs when loaded)"
    )
    print(
        f"match_many       {mm_rate:12,.0f} fixes/s   ({pairs / n_fixes:.1f} zones per fix,"
        f" {pairs / mm_s:,.0f} pairs/s)"
    )

    t, c = time.perf_counter(), time.process_time()
    for a in range(0, n_fixes, batch):
        index.match_many(lats[a : a + batch], lngs[a : a + batch]).zone_ids()
    ids_s, ids_cpu = time.perf_counter() - t, time.process_time() - c
    print(
        f"  + zone_ids()   {n_fixes / ids_s:12,.0f} fixes/s   ({n_fixes / ids_cpu:,.0f} of CPU time)"
        " with every pair's zone-id string materialised too"
    )

    sl, sg = lats[:n_single].tolist(), lngs[:n_single].tolist()
    gc.collect()
    r0 = rss_mb()
    t = time.perf_counter()
    index.match(sl[0], sg[0])  # builds the scalar lookup dicts (first match() after a build)
    print(
        f"match dicts      {time.perf_counter() - t:8.2f} s to build on the first match(),"
        f" RSS +{rss_mb() - r0:.1f} MB"
    )
    t = time.perf_counter()
    for a, b in zip(sl, sg, strict=True):
        index.match(a, b)
    m_rate = n_single / (time.perf_counter() - t)
    t = time.perf_counter()
    for a, b in zip(sl, sg, strict=True):
        h3i.latlng_to_cell(a, b, 10)
    h3_rate = n_single / (time.perf_counter() - t)
    t = time.perf_counter()
    for a, b in zip(sl, sg, strict=True):
        h3.latlng_to_cell(a, b, 10)
    h3s_rate = n_single / (time.perf_counter() - t)
    print(f"match            {m_rate:12,.0f} fixes/s   (Python loop over {n_single:,} fixes)")
    print(
        f"h3 loop (int)    {h3_rate:12,.0f} fixes/s   -> match is {h3_rate / m_rate:.1f}x slower than"
        " bare latlng_to_cell"
    )
    print(f"h3 loop (str)    {h3s_rate:12,.0f} fixes/s   -> {h3s_rate / m_rate:.1f}x")

    shapes = [zone_shape(z) for z in zones]
    ids = np.array([z.id for z in zones], dtype=object)
    tree = shapely.STRtree(shapes)
    pts = shapely.points(lngs[:n_sample], lats[:n_sample])
    t = time.perf_counter()
    p_idx, z_idx = tree.query(pts, predicate="within")
    st_rate = n_sample / (time.perf_counter() - t)
    truth = set(zip(p_idx.tolist(), ids[z_idx].tolist(), strict=True))
    found = index.match_many(lats[:n_sample], lngs[:n_sample])
    pos = found.positions
    got = set(zip(pos.tolist(), found.zone_ids().tolist(), strict=True))
    mism = len(truth ^ got) + (len(pos) - len(got))
    print(f"STRtree          {st_rate:12,.0f} fixes/s   -> match_many is {mm_rate / st_rate:.1f}x STRtree")
    print(
        f"mismatches       {mism:12,d}   on {n_sample:,} fixes ({len(truth):,} true pairs;"
        f" missed {len(truth - got)}, extra {len(got - truth)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~10x smaller workloads (well under a minute)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    k = 10 if args.quick else 1
    n_fixes, n_sample, n_single = 1_000_000 // k, 100_000 // k, 100_000 // k
    rng = np.random.default_rng(args.seed)
    try:
        import h3ronpy

        h3r = f"h3ronpy {h3ronpy.__version__}"
    except ImportError:
        h3r = "no h3ronpy"
    print(f"h3 {h3.__version__}, shapely {shapely.__version__}, numpy {np.__version__}, {h3r}; one core")
    for name, drive in (("sparse", 200), ("dense", 2000)):
        zones, stores = workload(rng, 8000 // k, drive // k, 500 // k)
        run(name, zones, stores, n_fixes, n_sample, n_single, rng)


if __name__ == "__main__":
    main()
