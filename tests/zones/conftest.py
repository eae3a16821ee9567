"""Street extracts read once per test session (pyosmium + graph build: ~0.7 s for Helsinki)."""

from __future__ import annotations

import pytest

from tests.zones.street_reference import bundled_extract
from zones.osm import StreetExtract, read_extract


@pytest.fixture(scope="session")
def helsinki() -> StreetExtract:
    return read_extract(bundled_extract("helsinki_pbf"))


@pytest.fixture(scope="session")
def karhula() -> StreetExtract:
    return read_extract(bundled_extract("test_pbf"))
