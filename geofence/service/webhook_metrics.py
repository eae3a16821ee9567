"""Webhook metrics for ``/metrics``: a receiver that stops answering shows as attempts failing, a
queue growing and its oldest undelivered message ageing — never as hooks lost without a trace.

Labels: the endpoint id (endpoints are registered by an operator: a bounded set) and an outcome."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Counter, Gauge
from sqlalchemy import func, select
from sqlmodel import Session, col

from geofence.service.metrics import REGISTRY
from geofence.service.tables._types import as_utc
from geofence.service.tables.webhooks import WebhookDeliveryRow, WebhookEndpointRow

ATTEMPTS = Counter(
    "geofence_webhook_attempts_total",
    "Webhook POSTs by endpoint and outcome (delivered | failed | gone | parked).",
    ["endpoint", "outcome"], registry=REGISTRY,
)
DELIVERIES = Counter(
    "geofence_webhook_deliveries_total",
    "Webhook messages settled, by endpoint and outcome (delivered | parked: given up after ~3 days).",
    ["endpoint", "outcome"], registry=REGISTRY,
)
QUEUED = Gauge(
    "geofence_webhook_messages",
    "Webhook messages by endpoint and status (pending | parked), read at scrape time.",
    ["endpoint", "status"], registry=REGISTRY,
)
OLDEST_PENDING_AGE = Gauge(
    "geofence_webhook_oldest_pending_age_seconds",
    "Age of the endpoint's oldest undelivered message (0 when none): the lag of its receiver.",
    ["endpoint"], registry=REGISTRY,
)
DISABLED = Gauge(
    "geofence_webhook_endpoint_disabled",
    "1 when the endpoint is disabled (it answered 410 Gone), read at scrape time.",
    ["endpoint"], registry=REGISTRY,
)


def refresh_webhook_gauges(session: Session, *, at: datetime) -> None:
    """Scrape-time gauges from the delivery table (the sender is in the worker process)."""
    endpoints = {e.id: e for e in session.execute(select(WebhookEndpointRow)).scalars()}
    counts = {
        (e, s): int(n)
        for e, s, n in session.execute(
            select(col(WebhookDeliveryRow.endpoint_id), col(WebhookDeliveryRow.status), func.count())
            .where(col(WebhookDeliveryRow.status).in_(["pending", "parked"]))
            .group_by(col(WebhookDeliveryRow.endpoint_id), col(WebhookDeliveryRow.status))
        ).all()
    }
    oldest = dict(
        session.execute(
            select(col(WebhookDeliveryRow.endpoint_id), func.min(col(WebhookDeliveryRow.created_at)))
            .where(col(WebhookDeliveryRow.status) == "pending")
            .group_by(col(WebhookDeliveryRow.endpoint_id))
        ).all()
    )
    for gauge in (QUEUED, OLDEST_PENDING_AGE, DISABLED):
        gauge.clear()  # a deleted endpoint's series go
    for endpoint_id, endpoint in endpoints.items():
        for status in ("pending", "parked"):
            QUEUED.labels(endpoint_id, status).set(counts.get((endpoint_id, status), 0))
        first = as_utc(oldest.get(endpoint_id))
        OLDEST_PENDING_AGE.labels(endpoint_id).set(max(0.0, (at - first).total_seconds()) if first else 0.0)
        DISABLED.labels(endpoint_id).set(1 if endpoint.disabled_at is not None else 0)
