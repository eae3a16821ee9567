"""The campaigns' tables (campaigns, deliveries, cap reservations) live in ``campaigns.storage.deliveries``;
re-exported here so the service's imports keep one ``tables`` namespace."""

from campaigns.storage.deliveries import *  # noqa: F403
from campaigns.storage.deliveries import __all__  # noqa: F401
