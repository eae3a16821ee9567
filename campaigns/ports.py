"""What campaigns need from the process that runs them, as ports the service implements and injects.

The wall clock arrives as ``now: Clock`` (the service's ``clock.now``; tests pass a fixed time), metrics
as a ``CampaignMetrics`` (the service's Prometheus counters; ``NO_METRICS`` where nobody scrapes).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

Clock = Callable[[], datetime]


class CampaignMetrics(Protocol):
    """Counters of the decision and delivery path. Labels must stay bounded (no ids, no free text)."""

    def decided(self, outcome: str, reason: str) -> None:
        """A send decision: ``outcome`` send | defer | skip, ``reason`` its reason's leading word."""

    def delivery_status(self, status: str, channel: str) -> None:
        """A delivery moved to ``status`` on ``channel`` (push | sms)."""

    def dispatch_lag(self, lag_s: float) -> None:
        """Seconds between a delivery being due and its send attempt."""

    def outbox_waiting(self, count: int) -> None:
        """Deliveries waiting to be sent, after a dispatch run."""


class _NoMetrics:
    def decided(self, outcome: str, reason: str) -> None:
        pass

    def delivery_status(self, status: str, channel: str) -> None:
        pass

    def dispatch_lag(self, lag_s: float) -> None:
        pass

    def outbox_waiting(self, count: int) -> None:
        pass


NO_METRICS: CampaignMetrics = _NoMetrics()
