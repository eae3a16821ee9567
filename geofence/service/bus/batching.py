"""What one transaction of an ingest worker takes from its partitions' buffers (``take``): the rule that
merges several partitions' messages into one batch, apart from the worker's I/O so it is read (and
tested) on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from geofence.fixes import LocationFix
from geofence.service.bus.checkpoint import Move

MAX_FIXES = 5000  # fixes per transaction, over all partitions
MAX_AT_SPAN = timedelta(seconds=1)  # between API receive times in a batch (``IngestWorker.ingest``)


class Entry(NamedTuple):
    """One message of a partition, decoded: its stream sequence, fixes and the API's receive time."""

    seq: int
    fixes: list[LocationFix]
    at: datetime


@dataclass
class Batch:
    """What one transaction ingests: the fixes, their ``at``, each partition's checkpoint move."""

    fixes: list[LocationFix]
    at: datetime
    moves: dict[int, Move]


def take(
    parts: Sequence[tuple[int, int, Sequence[Entry]]], *, max_fixes: int = MAX_FIXES,
    max_at_span: timedelta = MAX_AT_SPAN,
) -> Batch | None:
    """One batch from the partitions' buffers (``(number, checkpoint, entries)``, in the order to serve
    them): from each, the messages after its checkpoint up to the first that shares a device with the
    batch (a device met once takes the ingest's fast lane, and two requests of a device are never
    merged, as the location feed does), while the batch holds at most ``max_fixes`` (a first message
    always goes) and its receive times span at most ``max_at_span``. None when there is nothing."""
    fixes: list[LocationFix] = []
    devices: set[str] = set()
    moves: dict[int, Move] = {}
    lo = hi = datetime.max.replace(tzinfo=UTC)  # set by the first message
    for number, after, entries in parts:
        last, n = after, 0
        for entry in entries:
            if entry.seq <= last:  # read again after a reopen
                continue
            mine = {f.device_id for f in entry.fixes}
            if fixes and (
                len(fixes) + len(entry.fixes) > max_fixes or not devices.isdisjoint(mine)
                or max(hi, entry.at) - min(lo, entry.at) > max_at_span
            ):
                break
            if not fixes:
                lo = hi = entry.at
            fixes.extend(entry.fixes)
            devices |= mine
            lo, hi = min(lo, entry.at), max(hi, entry.at)
            last, n = entry.seq, n + len(entry.fixes)
        if last > after:
            moves[number] = Move(after, last, n)
    return Batch(fixes, hi, moves) if moves else None
