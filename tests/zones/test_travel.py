"""Travel-time sizing: mode "auto", fallback to the circle, provenance, CSV / GeoJSON."""

from __future__ import annotations

import json

import pytest
import shapely

from zones.errors import ZoneError
from zones.io import read_zones_csv, read_zones_geojson, write_zones_geojson
from zones.model import Area, Circle, Zone
from zones.osm import StreetExtract
from zones.travel import choose_mode, size_by_travel

HELSINKI_STORE = (60.1699, 24.9384)  # Kluuvi, central Helsinki
KARHULA_EDGE = (60.5370, 26.9660)  # north-east edge of the Karhula extract: houses, woods


def test_auto_walks_in_central_helsinki_and_drives_at_karhulas_edge(
    helsinki: StreetExtract, karhula: StreetExtract
) -> None:
    mode, rule = choose_mode(helsinki, *HELSINKI_STORE)
    assert mode == "walk" and "km of walkable streets" in rule and "-> walk" in rule
    mode, rule = choose_mode(karhula, *KARHULA_EDGE)
    assert mode == "drive" and "-> drive" in rule


def test_isochrone_keeps_its_provenance(helsinki: StreetExtract) -> None:
    geometry, travel = size_by_travel(*HELSINKI_STORE, "auto", 5, "isochrone", helsinki)
    assert isinstance(geometry, Area)
    assert travel.method == "isochrone" and travel.fallback is None
    assert travel.mode == "walk" and travel.requested_mode == "auto" and travel.auto_rule
    assert travel.extract == "Helsinki.osm.pbf" and travel.extract_date == "2019-04-21T09:50:14+00:00"
    assert travel.speeds_kmh["footway"] == 5.0 and travel.buffer_m == 25.0
    zone = Zone(id="z", name="z", geometry=geometry, travel=travel)
    assert Zone.from_dict(json.loads(json.dumps(zone.to_dict()))) == zone


@pytest.mark.parametrize(("extract_name", "where", "reason"), [
    (None, HELSINKI_STORE, "no street extract configured"),
    ("helsinki", (48.85, 2.35), "outside the street extract Helsinki.osm.pbf"),
])
def test_without_usable_extract_the_circle_is_drawn_and_says_why(
    extract_name: str | None, where: tuple[float, float], reason: str, request: pytest.FixtureRequest
) -> None:
    extract = None if extract_name is None else request.getfixturevalue(extract_name)
    geometry, travel = size_by_travel(*where, "drive", 5, "isochrone", extract)
    assert isinstance(geometry, Circle) and geometry.radius_m == pytest.approx(4861, abs=1)
    assert travel.method == "circle" and travel.requested_method == "isochrone"
    assert travel.fallback is not None and reason in travel.fallback


def test_circle_method_draws_the_profile_circle(helsinki: StreetExtract) -> None:
    geometry, travel = size_by_travel(*HELSINKI_STORE, "walk", 5, "circle", helsinki)
    assert isinstance(geometry, Circle) and geometry.radius_m == pytest.approx(397, abs=1)
    assert travel.fallback is None and travel.method == "circle"


@pytest.mark.parametrize(("mode", "minutes", "method", "match"), [
    ("bike", 5, "isochrone", "mode must be one of"),
    ("walk", 0, "isochrone", "minutes must be in"),
    ("walk", 500, "isochrone", "minutes must be in"),
    ("walk", 5, "hull", "method must be one of"),
])
def test_bad_travel_requests_are_refused(mode: str, minutes: float, method: str, match: str) -> None:
    with pytest.raises(ZoneError, match=match):
        size_by_travel(*HELSINKI_STORE, mode, minutes, method, None)


def test_csv_rows_with_mode_get_isochrones_and_bad_rows_are_reported(karhula: StreetExtract) -> None:
    text = (
        "id,name,lat,lng,mode,method,minutes\n"
        "a,Store A,60.5248954,26.9486699,walk,isochrone,5\n"
        "b,Store B,60.5248954,26.9486699,drive,,3\n"
        "c,Store C,60.5248954,26.9486699,swim,,5\n"
    )
    zones, errors = read_zones_csv(text, karhula)
    assert [z.id for z in zones] == ["a", "b"]
    assert all(isinstance(z.geometry, Area) and z.travel and z.travel.method == "isochrone" for z in zones)
    assert zones[1].travel is not None and zones[1].travel.mode == "drive"
    assert errors[0].line == 4 and "mode must be one of" in errors[0].reason


def test_csv_without_extract_falls_back_to_circles() -> None:
    zones, errors = read_zones_csv("name,lat,lng,mode\nS,60.17,24.94,walk\n")
    assert not errors and isinstance(zones[0].geometry, Circle)
    assert zones[0].travel is not None and "no street extract" in (zones[0].travel.fallback or "")


def test_geojson_export_import_round_trips_isochrones(karhula: StreetExtract) -> None:
    doc = {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [26.9486699, 60.5248954]},
        "properties": {"id": "k", "name": "Karhula", "mode": "walk", "method": "isochrone", "minutes": 4},
    }]}
    zones, errors = read_zones_geojson(doc, karhula)
    assert not errors and isinstance(zones[0].geometry, Area)
    again, errors = read_zones_geojson(json.loads(json.dumps(write_zones_geojson(zones))))
    assert not errors and again == zones
    shape = shapely.geometry.shape(again[0].geometry.geojson)  # type: ignore[union-attr]
    assert shape.contains(shapely.Point(26.9486699, 60.5248954))
