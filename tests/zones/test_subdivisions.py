"""Zones carry their subdivision, derived from the position where the bundled outlines cover it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon

from zones.io import read_zones_csv
from zones.model import Area, Circle, Zone
from zones.subdivisions import OUTLINES, derived_subdivision, subdivision_at

# Towns on either side of the borders the outlines follow (lat, lng).
TOWNS = [
    ("Metz", 49.1193, 6.1757, "57"), ("Thionville", 49.357, 6.168, "57"),
    ("Forbach", 49.188, 6.896, "57"), ("Sarreguemines", 49.11, 7.07, "57"),
    ("Bitche", 49.052, 7.429, "57"), ("Sarrebourg", 48.735, 7.054, "57"),
    ("Phalsbourg", 48.768, 7.258, "57"), ("Sarralbe", 48.99, 7.03, "57"), ("Dieuze", 48.81, 6.72, "57"),
    ("Château-Salins", 48.819, 6.513, "57"), ("Strasbourg", 48.5734, 7.7521, "67"),
    ("Saverne", 48.741, 7.362, "67"), ("Haguenau", 48.815, 7.79, "67"),
    ("Wissembourg", 49.037, 7.946, "67"), ("Sélestat", 48.259, 7.454, "67"),
    ("Obernai", 48.462, 7.482, "67"), ("Colmar", 48.0794, 7.3585, "68"),
    ("Mulhouse", 47.7508, 7.3359, "68"), ("Ribeauvillé", 48.195, 7.319, "68"),
    ("Saint-Louis", 47.59, 7.56, "68"), ("Thann", 47.807, 7.103, "68"), ("Altkirch", 47.624, 7.24, "68"),
    ("Nancy", 48.692, 6.184, None), ("Lunéville", 48.59, 6.49, None), ("Belfort", 47.638, 6.863, None),
    ("Épinal", 48.17, 6.45, None), ("Paris", 48.8566, 2.3522, None),
    ("Pont-à-Mousson", 48.905, 6.054, None), ("Briey", 49.249, 5.94, None), ("Saint-Dié", 48.285, 6.95, None),
]  # fmt: skip


@pytest.mark.parametrize(("town", "lat", "lng", "expected"), TOWNS)
def test_towns_on_either_side_of_the_borders_get_their_subdivision(town, lat, lng, expected):
    assert subdivision_at(lat, lng, "FR") == expected, town


def test_outlines_are_valid_and_neighbours_share_borders_without_overlap():
    shapes = {key: Polygon(ring) for key, ring in OUTLINES.items()}
    assert all(shape.is_valid for shape in shapes.values())
    for a, b in itertools.combinations(shapes.values(), 2):
        assert a.intersection(b).area == pytest.approx(0.0, abs=1e-12)


@given(st.floats(47.3, 49.6), st.floats(5.8, 8.3))
def test_a_point_gets_the_one_outline_shapely_says_contains_it(lat, lng):
    inside = [code for (_, code), ring in OUTLINES.items() if Polygon(ring).contains(Point(lng, lat))]
    assert len(inside) <= 1
    assert subdivision_at(lat, lng, "FR") == (inside[0] if inside else None)
    assert subdivision_at(lat, lng, "DE") is None  # the outlines are French


def test_an_area_zone_uses_a_point_inside_it():
    square = {"type": "Polygon", "coordinates": [[[7.74, 48.57], [7.76, 48.57], [7.76, 48.58], [7.74, 48.58],
                                                  [7.74, 48.57]]]}
    assert derived_subdivision(Zone(id="z", name="Strasbourg", geometry=Area(square))) == "67"
    assert derived_subdivision(Zone(id="z", name="Metz", geometry=Circle(49.1193, 6.1757, 200))) == "57"


def test_csv_import_derives_the_subdivision_unless_given():
    text = ("name,lat,lng,radius_m,subdivision\nMetz,49.1193,6.1757,200,\nNear border,48.94,7.09,200,57\n"
            "Paris,48.8566,2.3522,200,\n")
    zones, errors = read_zones_csv(text)
    assert not errors
    assert [z.subdivision for z in zones] == ["57", "57", None]  # explicit wins (Sarre-Union is 67)
    assert Zone.from_dict(zones[0].to_dict()) == zones[0]
