"""/metrics: Prometheus exposition of the shared counters plus outbox gauges computed at scrape time."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from geofence.service import clock, metrics
from geofence.service.app import create_app
from geofence.service.db import session_scope
from geofence.service.tables.campaigns import PENDING, SENT, Delivery


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _delivery(key: str, status: str, due_at) -> Delivery:
    return Delivery(idempotency_key=key, channel="push", status=status, due_at=due_at, created_at=due_at)


def test_metrics_expose_counters_and_outbox_gauges_without_credentials(secure_settings, engine):
    app = create_app(secure_settings, engine=engine)
    at = clock.now()
    with session_scope(engine) as s:
        s.add(_delivery("a", PENDING, at - timedelta(seconds=90)))
        s.add(_delivery("b", PENDING, at + timedelta(hours=1)))  # waiting, not yet due
        s.add(_delivery("c", SENT, at - timedelta(hours=2)))
    before = metrics.FIXES.labels(result="rejected", reason="metrics_test")._value.get()
    metrics.FIXES.labels(result="rejected", reason="metrics_test").inc()
    with TestClient(app) as client:
        r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = _samples(r.text)
    assert samples[("geofence_outbox_waiting", ())] == 2
    assert 90 <= samples[("geofence_outbox_oldest_due_age_seconds", ())] < 120
    key = ("geofence_fixes_total", (("reason", "metrics_test"), ("result", "rejected")))
    assert samples[key] == before + 1
    families = {f.name for f in text_string_to_metric_families(r.text)}
    assert {"geofence_zone_events", "geofence_deliveries", "geofence_dispatch_lag_seconds"} <= families


def test_metrics_not_in_the_openapi_schema(settings):
    app = create_app(settings)
    assert "/metrics" not in app.openapi()["paths"]


def test_metrics_still_served_when_the_database_is_gone(settings, tmp_path):
    from sqlalchemy import text

    app = create_app(settings)
    with app.state.runtime.engine.begin() as conn:
        conn.execute(text("DROP TABLE deliveries"))
    with TestClient(app) as client:
        r = client.get("/metrics")
    assert r.status_code == 200 and "geofence_fixes_total" in r.text


def test_metrics_count_sends_without_an_answer_by_how_they_were_settled(secure_settings, engine):
    app = create_app(secure_settings, engine=engine)
    at = clock.now()
    with session_scope(engine) as s:
        reasons = ["ambiguous_send", "ambiguous_send", "reconciled", "outcome_unknown", "expired"]
        for i, reason in enumerate(reasons):
            row = _delivery(f"k{i}", SENT, at)
            row.reason = reason
            s.add(row)
    with TestClient(app) as client:
        samples = _samples(client.get("/metrics").text)
    assert samples[("geofence_outbox_ambiguous", (("reason", "ambiguous_send"),))] == 2
    assert samples[("geofence_outbox_ambiguous", (("reason", "reconciled"),))] == 1
    assert samples[("geofence_outbox_ambiguous", (("reason", "outcome_unknown"),))] == 1
