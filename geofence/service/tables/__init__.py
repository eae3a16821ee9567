"""SQLModel tables, one module per domain. Importing this package registers all of them."""

from geofence.service.tables import (  # noqa: F401
    answers,
    bus,
    campaigns,
    consumers,
    customers,
    exports,
    keys,
    limits,
    presence,
    webhooks,
    zones,
)
