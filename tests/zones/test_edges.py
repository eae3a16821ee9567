"""One rule at the edges of the coordinate range (docs/zones.md, *Edges*): a longitude outside
[-180, 180] is out of range everywhere (the ingest refuses it, the index matches nothing), and on the
antimeridian itself the index says what ``zone_shape`` says (the split zones' cut is their boundary)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import shapely
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from geofence.fixes import FixLimits, LocationFix, check_fix
from tests.zones.shapes import circle
from zones.geometry import M_PER_DEG, zone_shape
from zones.index import ZoneIndex

AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
beyond = st.one_of(st.floats(180.0, 1e6, exclude_min=True), st.floats(-1e6, -180.0, exclude_max=True))


@settings(max_examples=60, deadline=None)
@given(lat=st.floats(-16.02, -15.98), lng=st.one_of(beyond, st.floats(180.0, 180.02, exclude_min=True)))
@example(lat=-16.0, lng=180.005)  # -179.995 once wrapped: inside "west"
def test_a_longitude_beyond_180_is_refused_by_the_ingest_and_matches_no_zone(lat, lng):
    index = ZoneIndex([circle("east", -16.0, 179.99, 3000), circle("west", -16.0, -179.99, 3000)])
    assert index.match(lat, lng) == []
    found = index.match_many(np.array([lat, -16.0]), np.array([lng, 179.99]))
    assert set(found.positions.tolist()) == {1}  # the good fix beside it still matches (both zones)
    fix = LocationFix(device_id="d", lat=lat, lng=lng, accuracy_m=10.0, recorded_at=AT)
    assert check_fix(fix, at=AT, limits=FixLimits()) == "lng_out_of_range"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.floats(-0.95, 0.95),  # where the centre is, in radii east of the antimeridian
    radius_m=st.sampled_from([20.0, 397.0, 3000.0, 12_000.0]),
    lat=st.floats(-60.0, 60.0),
    offsets=st.lists(st.floats(-1.2, 1.2), min_size=1, max_size=20),
    cut=st.sampled_from([180.0, -180.0]),
)
def test_on_the_antimeridian_the_index_says_what_zone_shape_says(side, radius_m, lat, offsets, cut):
    centre_lng = -180.0 + side * radius_m / (M_PER_DEG * math.cos(math.radians(lat)))
    centre_lng = centre_lng + 360.0 if centre_lng < -180.0 else centre_lng
    zones = [circle("c", lat, centre_lng, radius_m), circle("half", lat, centre_lng, radius_m / 2)]
    index = ZoneIndex(zones)
    lats = lat + np.array(offsets) * radius_m / M_PER_DEG
    lngs = np.full(len(lats), cut)
    truth = {(i, z.id) for z in zones for i in np.flatnonzero(shapely.contains_xy(zone_shape(z), lngs, lats))}
    found = index.match_many(lats, lngs)
    assert set(zip(found.positions.tolist(), found.zone_ids().tolist(), strict=True)) == truth
    for i in range(len(lats)):
        assert sorted(index.match(float(lats[i]), cut)) == sorted(z for j, z in truth if j == i)
