"""The API side of the partitioned ingest: checked fixes -> JetStream, answered once acknowledged.

``FixPublisher.publish`` has the shape of ``GeofenceService.ingest`` (fixes, ``at``, refused positions ->
``IngestOutcome``), so the route, its location feed (which merges concurrent requests) and the replay
CLI use it unchanged. It rejects what the API can know alone, with the reasons the embedded path gives
(refused by the adapter: decoding, device not allowed, no location consent; ``fixes.fix_problem``: stale,
from the future, inaccurate, out of range), publishes the rest, one message per partition, and waits
for JetStream's acknowledgement of each (``acks``: one wait per request, not one request per message).
A fix is then ``accepted``: durably queued. What needs the device's history (duplicate or late fixes,
jumps, the transitions) is decided by the partition's worker; the answer carries no events on this path
(they reach consumers through the zone-event log).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from fastapi import HTTPException

from geofence.fixes import FixLimits, LocationFix, fix_problem
from geofence.ingest import OK, FixResult, IngestOutcome
from geofence.service.bus.link import NatsLink
from geofence.service.bus.partitions import encode, split_by_partition, subject_of

log = logging.getLogger(__name__)


class FixPublisher:
    def __init__(self, link: NatsLink, limits: FixLimits) -> None:
        self.link = link
        self.limits = limits
        self.messages = 0  # published (duplicates included), for the benchmark and tests

    def publish(
        self, fixes: Sequence[LocationFix], *, at: datetime, refused: Mapping[int, str] | None = None
    ) -> IngestOutcome:
        results: list[FixResult] = [OK] * len(fixes)
        counts: dict[tuple[str, str], int] = {}
        earliest, latest = at - self.limits.max_age, at + self.limits.clock_skew
        kept: list[LocationFix] = []
        for i, fix in enumerate(fixes):
            reason = refused.get(i) if refused else None
            if reason is None:
                reason = fix_problem(fix, earliest, latest, self.limits.max_accuracy_m)
            if reason is not None:
                results[i] = FixResult("rejected", reason)
                counts[("rejected", reason)] = counts.get(("rejected", reason), 0) + 1
            else:
                kept.append(fix)
        if kept:
            self._send(kept, at)
            counts[("accepted", "")] = len(kept)
        return IngestOutcome(results, [], counts)

    def _send(self, fixes: Sequence[LocationFix], at: datetime) -> None:
        config = self.link.config
        messages = []
        for p, part in split_by_partition(fixes, config.partitions).items():
            subject = subject_of(config.subject, p)
            payload, headers = encode(subject, part, at)
            messages.append((subject, payload, headers))
        link = self.link
        link.connect()
        assert link.nc is not None
        send = link.acks.publish_all(link.nc, config.stream, messages, config.publish_timeout_s)
        try:
            link.call(send, timeout_s=config.publish_timeout_s + 1.0)
        except Exception as exc:  # not acknowledged: nothing is promised, the client retries
            log.warning("fixes not acknowledged by JetStream: %s: %s", type(exc).__name__, exc)
            detail = "the fix stream did not acknowledge the fixes; retry"
            raise HTTPException(503, detail=detail, headers={"Retry-After": "1"}) from None
        self.messages += len(messages)
