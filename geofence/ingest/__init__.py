"""Use case: a batch of fixes -> per-fix results, presence changes and zone events (no FastAPI, no SDK).

Read it in this order:

- ``ingestor``: ``Ingestor.ingest``, the use case: check -> group by device -> step -> save;
- ``screening``: the checks and the per-device screen (duplicates, late fixes, implausible jumps);
- ``stepping``: one device's fixes stepped through the pure ``presence.step``, and what to store;
- ``reference``: the reference lane, reading every device and stepping every fix (the meaning);
- ``accelerated``: the same with what cannot change left out (``fast_screen``, ``discs``, ``steady``,
  ``columns``), held equal to the reference by the equivalence tests of ``tests/geofence/test_ingest.py``.

The device tracks (last fix time and position, recent client fix ids) are an in-process cache: they make
the duplicate / late / jump checks cheap. Each device's head carries its last processed fix so a late fix
never rewinds a presence even when the cache is cold or another process saw the newer fix — to within one
``HEARTBEAT``: a head whose only change is a newer last fix is re-written once the stored one is a
heartbeat old, not on every fix (docs/presence.md says what that costs).
"""

from geofence.ingest.columns import IngestStats
from geofence.ingest.ingestor import MAX_CONFLICT_RETRIES, Changes, Ingestor
from geofence.ingest.results import ACCEPTED, DUPLICATE, OK, REJECTED, FixResult, IngestOutcome
from geofence.ingest.screening import JUMPS_BEFORE_REANCHOR
from geofence.ingest.stepping import HEARTBEAT
from geofence.ingest.zone_policies import ZoneLookup

__all__ = [
    "ACCEPTED", "DUPLICATE", "HEARTBEAT", "JUMPS_BEFORE_REANCHOR", "MAX_CONFLICT_RETRIES", "OK", "REJECTED",
    "Changes", "FixResult", "IngestOutcome", "IngestStats", "Ingestor", "ZoneLookup",
]
