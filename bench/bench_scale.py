"""How the zone index scales: 1,000 -> 1,000,000 zones over French towns.

    .venv/bin/python -m bench.bench_scale                  # 1k, 10k, 100k, 1M walking + a mixed 1M
    .venv/bin/python -m bench.bench_scale --sizes 1000 10000 --no-mixed   # quick

Each size runs in its own process (peak RSS is that process's and its cover workers'). Zones: walking
circles (5 min, 397 m) around 2,000 towns spread over metropolitan France (town weights Pareto, zones
within ~2 km of their town); *mixed*: 90 % walking, 9 % rural driving (4.9 km), 1 % polygons (star
shapes, 150-1,500 m). Fixes: the same 1,000,000 each time, around the same towns.

Printed per size: build (wall, CPU of this process and of its workers), peak RSS, memory held by the index
(RSS after the build minus before, the zones themselves excluded), ``match_many`` fixes per CPU-second
(batches of 100,000) against the floor, h3ronpy's vectorised ``latlng_to_cell`` per CPU-second on the same
fixes; mismatches against shapely on a sample (up to 100,000 zones: the shapely ground truth of a million
zones would not fit); one-zone add / move / remove latency (median and worst of 300 each, including the
changes that pack a run); a snapshot file written, then read back until it answers a batch of 100,000 fixes
(``zones.snapshot``: a restart; the file is in the page cache, as after the worker wrote it); a bulk
import of 10,000 zones (``add_many``); ``compact()``.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial

import numpy as np

FRANCE = (43.3, 50.5, -4.3, 7.5)  # lat, lat, lng, lng
N_TOWNS = 2000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def towns(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    at = np.column_stack([rng.uniform(*FRANCE[:2], N_TOWNS), rng.uniform(*FRANCE[2:], N_TOWNS)])
    w = rng.pareto(1.2, N_TOWNS) + 1.0
    return at, w / w.sum()


def around_towns(rng: np.random.Generator, n: int, sigma_m: float) -> tuple[np.ndarray, np.ndarray]:
    from zones.geometry import M_PER_DEG

    at, w = towns(np.random.default_rng(0))  # the same towns for zones and fixes
    t = at[rng.choice(N_TOWNS, n, p=w)]
    lat = t[:, 0] + rng.normal(0, sigma_m, n) / M_PER_DEG
    lng = t[:, 1] + rng.normal(0, sigma_m, n) / (M_PER_DEG * np.cos(np.radians(t[:, 0])))
    return lat, lng


def make_zones(n: int, mixed: bool, seed: int, prefix: str = "z") -> list:
    from bench.bench_zones import star
    from zones.model import Area, Circle, Zone
    from zones.sizing import size_zone

    rng = np.random.default_rng(seed)
    lat, lng = around_towns(rng, n, 2000.0)
    walk = size_zone(0.0, 0.0, "walk").radius_m
    drive = size_zone(0.0, 0.0, "drive_rural").radius_m
    kind = rng.uniform(0, 1, n) if mixed else np.zeros(n)
    zones = []
    for i, (a, b, k) in enumerate(zip(lat.tolist(), lng.tolist(), kind.tolist(), strict=True)):
        if k < 0.90:
            g = Circle(a, b, walk)
        elif k < 0.99:
            g = Circle(a, b, drive)
        else:
            g = Area(star(a, b, float(rng.uniform(150, 1500)), rng))
        zones.append(Zone(id=f"{prefix}{i}", name="z", geometry=g))
    return zones


def _trim() -> None:
    """Give freed heap back to the OS, so that RSS shows what is held, not what the build freed."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def cpu_s() -> tuple[float, float]:
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def one(n: int, mixed: bool, n_fixes: int, workers: int, compact: bool) -> dict:
    """Measure one size in this process; returns the figures."""
    import shapely
    from h3ronpy.vector import coordinates_to_cells

    from zones.geometry import zone_shape
    from zones.index import ZoneIndex
    from zones.model import Circle, Zone
    from zones.snapshot import read_snapshot, write_snapshot

    out: dict = {"zones": n, "mixed": mixed}
    zones = make_zones(n, mixed, seed=1)
    lats, lngs = around_towns(np.random.default_rng(2), n_fixes, 3000.0)
    ZoneIndex(zones[:50]).match_many(lats[:2000], lngs[:2000])  # numba kernels compiled/loaded
    gc.collect()
    _trim()
    r0 = rss_mb()
    t, (c, cc) = time.perf_counter(), cpu_s()
    index = ZoneIndex(zones, workers=workers)
    c1, cc1 = cpu_s()
    out["build_wall_s"] = time.perf_counter() - t
    out["build_cpu_s"] = c1 - c
    out["build_worker_cpu_s"] = cc1 - cc
    gc.collect()
    _trim()
    out["held_mb"] = rss_mb() - r0

    batch = 100_000
    index.match_many(lats[:batch], lngs[:batch])
    c = time.process_time()
    pairs = 0
    for a in range(0, n_fixes, batch):
        pairs += len(index.match_many(lats[a : a + batch], lngs[a : a + batch]).positions)
    out["match_many_per_cpu_s"] = n_fixes / (time.process_time() - c)
    out["zones_per_fix"] = pairs / n_fixes
    c = time.process_time()
    for a in range(0, n_fixes, batch):
        coordinates_to_cells(lats[a : a + batch], lngs[a : a + batch], 11)
    out["h3_floor_per_cpu_s"] = n_fixes / (time.process_time() - c)
    out["vs_floor"] = out["match_many_per_cpu_s"] / out["h3_floor_per_cpu_s"]

    if n <= 100_000:  # shapely's truth on a sample
        sample = 20_000
        tree = shapely.STRtree([zone_shape(z) for z in zones])
        p_idx, z_idx = tree.query(shapely.points(lngs[:sample], lats[:sample]), predicate="within")
        ids = np.array([z.id for z in zones], dtype=object)
        truth = set(zip(p_idx.tolist(), ids[z_idx].tolist(), strict=True))
        found = index.match_many(lats[:sample], lngs[:sample])
        got = set(zip(found.positions.tolist(), found.zone_ids().tolist(), strict=True))
        out["mismatches"] = len(truth ^ got) + (len(found.positions) - len(got))
        out["mismatch_sample"] = sample
        del tree

    path = os.path.join(tempfile.mkdtemp(), "zones.npz")
    t = time.perf_counter()
    write_snapshot(index, path)
    out["snapshot_write_s"] = time.perf_counter() - t
    out["snapshot_mb"] = os.path.getsize(path) / 1e6
    t, c = time.perf_counter(), time.process_time()
    back, _ = read_snapshot(path)
    back.match_many(lats[:batch], lngs[:batch])  # ready: answers
    out["snapshot_read_s"], out["snapshot_read_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    del back

    gc.collect()

    rng = np.random.default_rng(3)
    fresh = make_zones(300, mixed, seed=4, prefix="new")
    lat_ms: dict[str, list[float]] = {"add": [], "move": [], "remove": []}
    cpu_ms: dict[str, list[float]] = {"add": [], "move": [], "remove": []}

    def timed(kind: str, change: Callable[[], None]) -> None:
        t, c = time.perf_counter(), time.process_time()
        change()
        lat_ms[kind].append((time.perf_counter() - t) * 1e3)
        cpu_ms[kind].append((time.process_time() - c) * 1e3)

    for z in fresh:
        timed("add", partial(index.add, z))
    for z in fresh:
        g = z.geometry
        moved = Zone(id=z.id, name=z.name, geometry=Circle(g.lat + 0.001, g.lng, g.radius_m)) if isinstance(
            g, Circle
        ) else z
        timed("move", partial(index.replace, moved))
    for i in rng.choice(n, 300, replace=False).tolist():
        timed("remove", partial(index.remove, zones[i].id))
    for k, v in lat_ms.items():
        out[f"{k}_ms_median"] = float(np.median(v))
        out[f"{k}_ms_max"] = float(np.max(v))
        out[f"{k}_cpu_ms_max"] = float(np.max(cpu_ms[k]))
    t = time.perf_counter()
    index.match(float(lats[0]), float(lngs[0]))
    out["match_after_changes_s"] = time.perf_counter() - t

    imported = make_zones(10_000, mixed, seed=5, prefix="imp")
    t, (c, cc) = time.perf_counter(), cpu_s()
    index.add_many(imported, workers=workers)
    c1, cc1 = cpu_s()
    out["import_10k_s"] = time.perf_counter() - t
    out["import_10k_cpu_s"] = (c1 - c) + (cc1 - cc)
    c = time.process_time()
    for a in range(0, n_fixes, batch):
        index.match_many(lats[a : a + batch], lngs[a : a + batch])
    out["match_many_after_import_per_cpu_s"] = n_fixes / (time.process_time() - c)
    out["compact_s"] = out["compact_cpu_s"] = math.nan
    if compact:  # a whole build again: optional at the largest sizes
        t, (c, cc) = time.perf_counter(), cpu_s()
        index.compact(workers=workers)
        c1, cc1 = cpu_s()
        out["compact_s"] = time.perf_counter() - t
        out["compact_cpu_s"] = (c1 - c) + (cc1 - cc)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e3
    out["peak_rss_mb"] = me
    out["worker_peak_rss_mb"] = kids
    # last: a forked child's peak RSS counts its parent's pages at the fork (RUSAGE_CHILDREN above)
    t = time.perf_counter()  # a new process: imports, the mapped file, the compiled kernels from their cache
    subprocess.run([sys.executable, "-c", _READY.format(path=path)], check=True)
    out["snapshot_process_ready_s"] = time.perf_counter() - t
    os.remove(path)
    return out


_READY = """
import numpy as np
from zones.snapshot import read_snapshot
index, _ = read_snapshot({path!r})
assert len(index.match_many(np.array([48.85, 45.76]), np.array([2.35, 4.83])).positions) >= 0
"""


def table(rows: list[dict]) -> str:
    def f(v: float, fmt: str) -> str:
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    head = (
        "| zones | build wall s | build CPU s (main + workers) | peak RSS MB | held MB"
        " | match_many fixes/CPU-s | × h3 floor | mismatches | add / move / remove ms (median, max (max CPU))"
        " | import 10k s (CPU) | compact s (CPU)"
        " | snapshot MB, write s, read+match s (CPU), new process s |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"
    )
    lines = [head]
    for r in rows:
        name = f"{r['zones']:,}" + (" mixed" if r["mixed"] else "")
        lat = " / ".join(
            f"{r[k + '_ms_median']:.1f}, {r[k + '_ms_max']:.0f} ({r.get(k + '_cpu_ms_max', math.nan):.0f})"
            for k in ("add", "move", "remove")
        )
        lines.append(
            f"| {name} | {r['build_wall_s']:.1f} | {r['build_cpu_s']:.1f} + {r['build_worker_cpu_s']:.1f}"
            f" | {r['peak_rss_mb']:,.0f} (workers {r['worker_peak_rss_mb']:,.0f}) | {r['held_mb']:,.0f}"
            f" | {r['match_many_per_cpu_s']:,.0f} | {r['vs_floor']:.2f} | {f(r.get('mismatches'), 'd')}"
            f" | {lat} | {r['import_10k_s']:.1f} ({r['import_10k_cpu_s']:.1f})"
            f" | {f(r['compact_s'], '.1f')} ({f(r['compact_cpu_s'], '.1f')})"
            f" | {r['snapshot_mb']:,.0f}, {r['snapshot_write_s']:.1f}, {r['snapshot_read_s']:.1f}"
            f" ({r['snapshot_read_cpu_s']:.1f}), {r['snapshot_process_ready_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000, 1_000_000])
    ap.add_argument("--no-mixed", action="store_true", help="skip the mixed run at the largest size")
    ap.add_argument("--fixes", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2, help="cover processes (default 2: this machine)")
    ap.add_argument("--no-compact", action="store_true", help="skip timing compact() (a second build)")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--mixed", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.mixed, args.fixes, args.workers, not args.no_compact)))
        return
    runs = [(n, False) for n in args.sizes] + ([] if args.no_mixed else [(max(args.sizes), True)])
    rows = []
    for n, mixed in runs:
        cmd = [sys.executable, "-m", "bench.bench_scale", "--one", str(n), "--fixes", str(args.fixes),
               "--workers", str(args.workers)] + (["--mixed"] if mixed else [])
        cmd += ["--no-compact"] if args.no_compact else []
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode:
            print(f"{n:,} {'mixed' if mixed else ''}: failed\n{done.stderr[-2000:]}", flush=True)
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nload average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (shared machine: wall times are"
          " pessimistic, CPU seconds less so)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
