"""What campaigns read of geofence's data: the zones and the zone-event log, as read-only table views.

The tables belong to geofence (``geofence.service.tables``): campaigns match zones' tags, resolve a zone's
time zone and centre, check a visit's latest event and export visits. These views name the columns read,
in their own ``MetaData`` (they create and migrate nothing), so campaigns depends on the schema — a
contract checked by ``tests/service/test_geofence_views.py`` — never on the service's code.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table

from campaigns.storage.columns import UtcDateTime

VIEWS = MetaData()

ZONE_EVENTS = Table(
    "zone_events",
    VIEWS,
    Column("id", String, primary_key=True),
    Column("seq", Integer),
    Column("zone_id", String, nullable=False),
    Column("device_id", String),  # None once the device's owner is erased
    Column("customer_id", String),
    Column("kind", String, nullable=False),  # enter | dwell | exit
    Column("at", UtcDateTime(), nullable=False),
    Column("visit_id", String, nullable=False),
    Column("reason", String, nullable=False),
    Column("lat", Float),  # rounded to ~100 m
    Column("lng", Float),
    Column("recorded_at", UtcDateTime()),
)

ZONES = Table(
    "zones",
    VIEWS,
    Column("id", String, primary_key=True),
    Column("name", String, nullable=False),
    Column("store_id", String),
    Column("data", JSON),  # zones.Zone.to_dict()
    Column("deleted_at", UtcDateTime()),
)

LOCATION_FIXES = Table(  # written only when ingest.fix_retention_s > 0 (click-and-collect reads positions)
    "location_fixes",
    VIEWS,
    Column("id", Integer, primary_key=True),
    Column("device_id", String, nullable=False),
    Column("lat", Float, nullable=False),
    Column("lng", Float, nullable=False),
    Column("accuracy_m", Float, nullable=False),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("received_at", UtcDateTime(), nullable=False),
)
