"""The index's per-slot circle rows (``circ``): what decides a circle's boundary hit without shapely.

A row is the unit vector of a circle's centre and two squared chord lengths: of a radius inside the
128-gon ``zone_shape`` makes (its apothem less a slack, ``cells._circle_slack_m``) and of one outside the
true circle (radius plus the slack). A fix nearer the centre than the first is inside, one farther than the
second is outside, and only the sub-metre band between goes to shapely; an area's row is
(0, 0, 0, -1, inf), so every boundary hit of an area goes to shapely. Apart from the index because it is
plain geometry of a circle, computed once per zone when it is indexed, and read by both lookups
(``zones.kernel`` directly, ``ZoneIndex.match`` as dot-product margins).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from zones.cells import _circle_slack_m
from zones.geometry import CIRCLE_VERTICES, EARTH_RADIUS_M
from zones.model import Circle, Zone


def circ_of(zones: Sequence[Zone]) -> np.ndarray:
    """The ``circ`` rows of ``zones`` (see ``PackedZones._grow``): circles' chord data, areas'
    (0, 0, 0, -1, inf)."""
    out = np.zeros((len(zones), 5))
    out[:, 3], out[:, 4] = -1.0, np.inf
    circles = [s for s, z in enumerate(zones) if isinstance(z.geometry, Circle)]
    if circles:
        g: list[Circle] = [zones[s].geometry for s in circles]  # type: ignore[misc]
        out[circles] = circle_rows(
            np.array([c.lat for c in g]), np.array([c.lng for c in g]), np.array([c.radius_m for c in g])
        )
    return out


def circle_rows(lat: np.ndarray, lng: np.ndarray, radius_m: np.ndarray) -> np.ndarray:
    """(n, 5): unit vector of each circle's centre and its squared chord margins (the chord test that
    confirms ``ZoneIndex``'s boundary hits)."""
    p, g = np.radians(lat), np.radians(lng)
    slack = _circle_slack_m(radius_m)
    inner = np.maximum(radius_m * math.cos(math.pi / CIRCLE_VERTICES) - slack, 0.0)
    outer = radius_m + slack
    chord_in = 2.0 * np.sin(inner / (2.0 * EARTH_RADIUS_M))
    chord_out = 2.0 * np.sin(np.minimum(outer / (2.0 * EARTH_RADIUS_M), math.pi / 2))
    cos_p = np.cos(p)
    return np.column_stack([cos_p * np.cos(g), cos_p * np.sin(g), np.sin(p), chord_in**2, chord_out**2])
