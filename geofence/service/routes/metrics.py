"""Route: Prometheus metrics (unauthenticated like /healthz: bind it to a private network)."""

from __future__ import annotations

import logging
import os
from datetime import datetime

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from campaigns.in_flight import AMBIGUOUS_REASONS
from geofence.service import clock, metrics
from geofence.service.deps import RuntimeDep
from geofence.service.event_log import refresh_consumer_gauges
from geofence.service.tables._types import as_utc
from geofence.service.tables.campaigns import WAITING_STATUSES, Delivery
from geofence.service.webhook_metrics import refresh_webhook_gauges

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)

OUTBOX_OLDEST_DUE_AGE = Gauge(
    "geofence_outbox_oldest_due_age_seconds",
    "Age of the oldest waiting delivery that is due (0 when none): dispatch lag even when nothing sends.",
    registry=metrics.REGISTRY,
)


OUTBOX_AMBIGUOUS = Gauge(
    "geofence_outbox_ambiguous",
    "Deliveries whose send had no answer, by reason: outcome_unknown (waiting to be settled),"
    " reconciled (the provider's list shows it sent), ambiguous_send (dropped, never sent again).",
    ["reason"], registry=metrics.REGISTRY,
)


def refresh_outbox_gauges(session: Session, *, at: datetime) -> None:
    """Scrape-time gauges from the outbox table (the dispatcher may be another process)."""
    ambiguous = dict(
        session.exec(
            select(Delivery.reason, func.count())
            .where(col(Delivery.reason).in_(AMBIGUOUS_REASONS))
            .group_by(col(Delivery.reason))
        ).all()
    )
    for reason in AMBIGUOUS_REASONS:
        OUTBOX_AMBIGUOUS.labels(reason=reason).set(int(ambiguous.get(reason, 0)))
    waiting = session.exec(
        select(func.count()).select_from(Delivery).where(col(Delivery.status).in_(WAITING_STATUSES))
    ).one()
    oldest_due = session.exec(
        select(func.min(Delivery.due_at)).where(
            col(Delivery.status).in_(WAITING_STATUSES), col(Delivery.due_at) <= at
        )
    ).one()
    metrics.OUTBOX_WAITING.set(int(waiting))
    oldest = as_utc(oldest_due)
    OUTBOX_OLDEST_DUE_AGE.set(max(0.0, (at - oldest).total_seconds()) if oldest else 0.0)


def _registry() -> CollectorRegistry:
    """Our registry; with PROMETHEUS_MULTIPROC_DIR set, the sum over every process writing there."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return metrics.REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@router.get("/metrics", response_class=Response, include_in_schema=False)
def prometheus_metrics(runtime: RuntimeDep) -> Response:
    """Prometheus text exposition."""
    try:
        with Session(runtime.engine) as session:
            refresh_outbox_gauges(session, at=clock.now())
            refresh_consumer_gauges(session)
            refresh_webhook_gauges(session, at=clock.now())
    except SQLAlchemyError as exc:  # the counters are still worth serving; /readyz reports the database
        log.warning("outbox / consumer / webhook gauges not refreshed: %s", type(exc).__name__)
    return Response(generate_latest(_registry()), media_type=CONTENT_TYPE_LATEST)
