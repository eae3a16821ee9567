"""The campaigns' own tables (SQLModel): the adapter subpackage that may import sqlmodel and sqlalchemy.

``geofence_views`` names the columns campaigns read of geofence's tables (zones, zone events) without
importing the service; importing this package registers the campaigns' tables on ``SQLModel.metadata``.
"""

from campaigns.storage import customers, deliveries, exports, orders  # noqa: F401
