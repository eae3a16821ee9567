"""WHERE: zone model, sizing by travel profile, geometry validation and the exact H3 index."""

from zones.errors import ZoneError
from zones.geometry import signed_distance_m, validate_zone, zone_shape
from zones.index import ZoneIndex, ZoneMatches
from zones.model import Area, Circle, FenceSettings, Zone
from zones.sizing import PROFILES, Profile, choose_resolution, size_zone, zone_size_m

__all__ = [
    "PROFILES",
    "Area",
    "Circle",
    "FenceSettings",
    "Profile",
    "Zone",
    "ZoneError",
    "ZoneIndex",
    "ZoneMatches",
    "choose_resolution",
    "signed_distance_m",
    "size_zone",
    "validate_zone",
    "zone_shape",
    "zone_size_m",
]
