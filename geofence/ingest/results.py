"""What the ingest answers: a result per fix, the events committed, and counts for metrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from geofence.events import ZoneEvent

ACCEPTED = "accepted"
DUPLICATE = "duplicate"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class FixResult:
    status: str  # accepted | duplicate | rejected
    reason: str | None = None


OK = FixResult(ACCEPTED)
DUPLICATE_RESULT = FixResult(DUPLICATE)
_REJECTIONS: dict[str, FixResult] = {}


def rejected(reason: str) -> FixResult:
    """The (shared) result of a fix rejected for ``reason``."""
    result = _REJECTIONS.get(reason)
    if result is None:
        result = FixResult(REJECTED, reason)
        if len(_REJECTIONS) < 1000:  # decoder messages vary; keep the cache bounded
            _REJECTIONS[reason] = result
    return result


@dataclass
class IngestOutcome:
    results: list[FixResult]
    events: list[ZoneEvent]
    counts: dict[tuple[str, str], int]  # (status, reason) -> number, for metrics


def tally(results: list[FixResult], positions: Iterable[int], accepted_elsewhere: int = 0) -> dict[
    tuple[str, str], int
]:
    """Counts by (status, reason) of the results at ``positions``, plus ``accepted_elsewhere`` accepted
    fixes counted without a look (the fast screen's)."""
    counts: dict[tuple[str, str], int] = {}
    for i in positions:
        r = results[i]
        key = (r.status, r.reason or "")
        counts[key] = counts.get(key, 0) + 1
    if accepted_elsewhere:
        counts[(ACCEPTED, "")] = counts.get((ACCEPTED, ""), 0) + accepted_elsewhere
    return counts
