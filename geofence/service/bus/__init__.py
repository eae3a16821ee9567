"""Partitioned ingest on NATS JetStream (``GEOFENCE_BUS=nats://…``; docs/scaling.md).

- ``partitions``: device -> partition, the message format, deterministic visit / event ids (pure);
- ``link``: the process's NATS connection on a loop of its own; the stream and the lease bucket;
- ``publisher``: the API side — checked fixes published per partition, answered once acknowledged;
- ``leases``: which worker owns which partition (JetStream key-value, TTL = the lease);
- ``checkpoint``: a partition's stream position, committed with its presences and zone events;
- ``worker``: ``geofence ingest-worker`` — consume the owned partitions through the embedded ingest.

With ``GEOFENCE_BUS`` empty (the default) none of this is imported: each API process ingests itself.
"""

from __future__ import annotations

from geofence.fixes import FixLimits
from geofence.service.bus.link import NatsLink
from geofence.service.bus.publisher import FixPublisher
from geofence.service.settings import Settings


def publisher_for(settings: Settings, limits: FixLimits) -> FixPublisher:
    """The API process's publisher; it connects on first use (uvicorn's workers each have their own)."""
    return FixPublisher(NatsLink(settings.bus, settings.partitioned), limits)
