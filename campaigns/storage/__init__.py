"""The campaigns' own tables (SQLModel): the adapter subpackage that may import sqlmodel and sqlalchemy.

``geofence_views`` names the columns campaigns read of geofence's tables (zones, zone events) without
importing the service; importing this package registers the campaigns' tables on ``SQLModel.metadata``.
``outbound_events`` is the store-side event log and its ``emit`` (see that module's docstring).
"""

from campaigns.storage import arrivals, customers, deliveries, exports, orders, outbound_events  # noqa: F401
