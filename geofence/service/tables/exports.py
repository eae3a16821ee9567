"""The export cursors' table lives in ``campaigns.storage.exports``; re-exported here so the service's
imports keep one ``tables`` namespace."""

from campaigns.storage.exports import *  # noqa: F403
from campaigns.storage.exports import __all__  # noqa: F401
