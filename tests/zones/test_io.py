"""CSV and GeoJSON import/export: bad rows reported by line and reason, good rows kept."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zones.errors import UnreadableFile
from zones.io import RowError, read_zones_csv, read_zones_geojson, write_zones_geojson
from zones.model import Area, Circle

CSV = """name,lat,lng,profile,minutes,radius_m,tags,tz,country,store_id,dwell_after_s,region
Opéra,48.8712,2.3319,walk,,,flagship;paris,Europe/Paris,FR,S1,300,IDF
Bad lat,91,2.3,walk,,,,,,S2,,
Versailles,48.80,2.13,drive_rural,10,,,,,S3,,IDF
No size,48.8,2.3,,,,,,,S4,,
Radius,48.8,2.3,,,150,,,,S5,,
Bad minutes,48.8,2.3,walk,soon,,,,,S6,,
Dup,48.8,2.3,walk,,,,,,S1,,
"""


def test_csv_keeps_good_rows_and_reports_bad_ones_by_line():
    zones, errors = read_zones_csv(CSV)
    assert [z.id for z in zones] == ["S1", "S3", "S5"]
    assert [e.line for e in errors] == [3, 5, 7, 8]
    assert "latitude 91" in errors[0].reason
    assert "profile" in errors[1].reason and "radius_m" in errors[1].reason
    assert "minutes must be a number" in errors[2].reason
    assert "duplicate id 'S1'" in errors[3].reason
    opera = zones[0]
    assert opera.tags == {"flagship", "paris"} and opera.fence.dwell_after_s == 300
    assert opera.metadata == {"region": "IDF"} and opera.profile == "walk" and opera.minutes == 5
    assert isinstance(opera.geometry, Circle) and 380 < opera.geometry.radius_m < 420
    assert zones[1].geometry.radius_m > 8000 and zones[2].geometry.radius_m == 150


def test_csv_header_problems():
    with pytest.raises(UnreadableFile, match="header row is required"):
        read_zones_csv("")
    with pytest.raises(UnreadableFile, match="lng"):
        read_zones_csv("name,lat\nA,1\n")
    zones, errors = read_zones_csv("name,lat,lng,radius_m\nA,48,2,100,extra\nB,48,2,100\n")
    assert [z.name for z in zones] == ["B"] and errors[0].line == 2


def test_geojson_import_export_round_trip():
    zones, errors = read_zones_csv(CSV)
    poly = {
        "type": "Polygon",
        "coordinates": [[[2.3, 48.8], [2.31, 48.8], [2.31, 48.81], [2.3, 48.81], [2.3, 48.8]]],
    }
    fc = write_zones_geojson(zones)
    fc["features"].append(
        {"type": "Feature", "id": "P", "geometry": poly, "properties": {"name": "Mall", "tags": ["x"]}}
    )
    fc["features"].append(
        {
            "type": "Feature",
            "geometry": {"type": "LineString", "coordinates": []},
            "properties": {"name": "L"},
        }
    )
    fc["features"].append("junk")
    back, errs = read_zones_geojson(json.dumps(fc))
    assert back[:3] == zones
    assert isinstance(back[3].geometry, Area) and back[3].id == "P" and back[3].tags == {"x"}
    assert [(e.line, "LineString" in e.reason or "Feature" in e.reason) for e in errs] == [
        (5, True),
        (6, True),
    ]
    with pytest.raises(UnreadableFile, match="^not JSON"):
        read_zones_geojson("{")
    with pytest.raises(UnreadableFile, match="expected a GeoJSON FeatureCollection"):
        read_zones_geojson({"type": "Feature"})
    with pytest.raises(UnreadableFile, match="features"):
        read_zones_geojson({"type": "FeatureCollection", "features": {}})


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_csv_never_raises_on_any_text(text):
    zones, errors = read_zones_csv("name,lat,lng,radius_m\n" + text)
    assert all(isinstance(e, RowError) for e in errors)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.text(max_size=5) | st.integers(),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    ["type", "features", "geometry", "properties", "coordinates", "name", "radius_m", "id"]
                ),
                c,
                max_size=4,
            )
        ),
        max_leaves=30,
    )
)
def test_geojson_never_raises_but_unreadable_file_on_any_object(obj):
    if isinstance(obj, dict):
        obj = {"type": "FeatureCollection", "features": [obj, {"type": "Feature", **obj}]}
    try:
        zones, errors = read_zones_geojson(obj)
    except UnreadableFile:
        assert not (isinstance(obj, dict) and obj.get("type") == "FeatureCollection")
        return
    assert isinstance(zones, list) and all(isinstance(e, RowError) for e in errors)
