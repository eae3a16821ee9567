"""An order at a store zone drawn on the streets is "approaching" inside the isochrone of N minutes
around the store, not inside the circle: across a motorway, 195 m away but a 15-minute walk, is not."""

from __future__ import annotations

import pytest

from campaigns.order_zones import approach_for
from tests.service.test_travel_zones import ACROSS_MOTORWAY, STORE
from tests.zones.street_reference import bundled_extract
from zones.model import Zone
from zones.osm import read_extract
from zones.travel import size_by_travel


@pytest.fixture(scope="module")
def karhula():
    return read_extract(bundled_extract("test_pbf"))


def test_street_based_zone_approaches_by_the_isochrone_and_without_an_extract_by_the_circle(karhula):
    geometry, travel = size_by_travel(STORE["lat"], STORE["lng"], "walk", 5, "isochrone", karhula)
    assert travel.method == "isochrone"
    zone = Zone("k", "Karhula", geometry, store_id="K", travel=travel)

    iso = approach_for(zone, 5, default_profile="drive_urban", extract=lambda: karhula)
    assert iso.geojson is not None and iso.contains(STORE["lat"], STORE["lng"])
    assert not iso.contains(*ACROSS_MOTORWAY)

    circle = approach_for(zone, 5, default_profile="drive_urban", extract=None)  # no extract configured
    assert circle.geojson is None and circle.profile == "walk" and round(circle.radius_m or 0) == 397
    assert circle.contains(*ACROSS_MOTORWAY)
