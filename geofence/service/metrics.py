"""Prometheus metrics (exposed at /metrics). Names are shared across domains; keep labels bounded."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

FIXES = Counter(
    "geofence_fixes_total", "Location fixes by result and reason.", ["result", "reason"], registry=REGISTRY
)
ZONE_EVENTS = Counter("geofence_zone_events_total", "Zone events by kind.", ["kind"], registry=REGISTRY)
DELIVERIES = Counter(
    "geofence_deliveries_total", "Delivery status changes by status and channel.", ["status", "channel"],
    registry=REGISTRY,
)
DECISIONS = Counter(
    "geofence_decisions_total", "Send decisions by outcome and reason.", ["outcome", "reason"],
    registry=REGISTRY,
)
DISPATCH_LAG = Histogram(
    "geofence_dispatch_lag_seconds", "Delay between a delivery being due and its send attempt.",
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 900), registry=REGISTRY,
)
OUTBOX_WAITING = Gauge("geofence_outbox_waiting", "Deliveries waiting to be sent.", registry=REGISTRY)
CONSENT_CHANGES = Counter(
    "geofence_consent_changes_total", "Consent ledger entries by purpose, grant/withdrawal and source.",
    ["purpose", "granted", "source"], registry=REGISTRY,
)
INBOUND_SMS = Counter(
    "geofence_inbound_sms_total", "Inbound SMS by keyword intent (duplicates = Twilio retries).",
    ["intent"], registry=REGISTRY,
)


class PrometheusCampaignMetrics:
    """``campaigns.ports.CampaignMetrics`` on this module's counters."""

    def decided(self, outcome: str, reason: str) -> None:
        DECISIONS.labels(outcome, reason).inc()

    def delivery_status(self, status: str, channel: str) -> None:
        DELIVERIES.labels(status, channel).inc()

    def dispatch_lag(self, lag_s: float) -> None:
        DISPATCH_LAG.observe(max(0.0, lag_s))

    def outbox_waiting(self, count: int) -> None:
        OUTBOX_WAITING.set(count)
