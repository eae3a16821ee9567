"""The customers' tables (customers, devices, consent ledger, suppressions, inbound SMS) live in
``campaigns.storage.customers``; re-exported here so the service's imports keep one ``tables`` namespace."""

from campaigns.storage.customers import *  # noqa: F403
from campaigns.storage.customers import __all__  # noqa: F401
