"""The periodic dispatch job: claim due deliveries, send them, record the results.

Run by APScheduler in the worker process (the service's ``dispatch`` job); several dispatchers may run
against the same PostgreSQL: the claim's lease keeps them apart. Throughput per sender is paced with
a token bucket held by the dispatcher (rows over the rate are given back with a later ``due_at``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from campaigns.in_flight import AMBIGUOUS_SEND, RECONCILED
from campaigns.limits import TokenBucket
from campaigns.outbox import Outcome, claim_due
from campaigns.outbox_sending import send_batch
from campaigns.ports import NO_METRICS, CampaignMetrics

log = logging.getLogger(__name__)


@dataclass
class Pacer:
    """Per-sender token buckets (``rates`` maps a sender key "channel:provider" or a channel to msg/s)."""

    rates: Mapping[str, float] = field(default_factory=dict)
    default_rate_per_s: float | None = None
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, sender: str, at: datetime) -> timedelta:
        rate = self.rates.get(sender, self.rates.get(sender.split(":")[0], self.default_rate_per_s))
        if not rate:
            return timedelta(0)
        with self._lock:
            bucket = self._buckets.get(sender) or TokenBucket.full(rate)
            bucket, wait = bucket.take(at)
            self._buckets[sender] = bucket
        return wait


@dataclass
class DispatchStats:
    claimed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    lags_s: list[float] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.by_status[outcome.status] = self.by_status.get(outcome.status, 0) + 1
        if outcome.lag_s is not None:
            self.lags_s.append(outcome.lag_s)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def dispatch_due(
    engine: Engine,
    *,
    providers: Mapping[str, Any],
    now: Callable[[], datetime],
    lease: timedelta = timedelta(seconds=60),
    batch: int = 100,
    max_attempts: int = 6,
    pace: Callable[[str, datetime], timedelta] | None = None,
    worker: str | None = None,
    max_batches: int = 50,
    metrics: CampaignMetrics = NO_METRICS,
) -> DispatchStats:
    """Claim and send until nothing is due (or ``max_batches`` batches), recording every result."""
    stats = DispatchStats()
    me = worker or worker_id()
    for _ in range(max_batches):
        claimed = claim_due(engine, at=now(), lease=lease, limit=batch, worker=me)
        if not claimed:
            break
        stats.claimed += len(claimed)
        outcomes = send_batch(
            engine, claimed, providers=providers, now=now, max_attempts=max_attempts, pace=pace
        )
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            stats.add(outcome)
            metrics.delivery_status(outcome.status, delivery.channel)
            ambiguity = _ambiguity(outcome)
            if ambiguity:
                metrics.ambiguous_send(delivery.channel, ambiguity)
            if outcome.lag_s is not None:
                metrics.dispatch_lag(outcome.lag_s)
        if len(claimed) < batch:
            break
    return stats


def _ambiguity(outcome: Outcome) -> str | None:
    """"unknown" for a send without an answer, then "reconciled" or "dropped" when it is settled."""
    if outcome.reason == "OutcomeUnknown":
        return "unknown"
    return {RECONCILED: "reconciled", AMBIGUOUS_SEND: "dropped"}.get(outcome.reason or "")
