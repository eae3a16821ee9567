"""The package installs, the app builds on the embedded default, and the health endpoints answer."""

from __future__ import annotations

from fastapi.testclient import TestClient

from geofence.service.app import create_app


def test_app_builds_and_is_ready(settings):
    with TestClient(create_app(settings)) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        ready = client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"


def test_engine_fixture_runs_on_both_databases(engine):
    assert engine.dialect.name in ("sqlite", "postgresql")
