"""The NATS server the bus tests use: the local one (127.0.0.1:4222, JetStream), required under CI;
a throw-away stream per test so tests never see each other's events."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlparse

import pytest

from geofence.service.settings import EventStreamSettings

NATS_URL = os.environ.get("GEOFENCE_TEST_NATS_URL", "nats://127.0.0.1:4222")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def nats_url() -> str:
    """The server's URL; skips the test when it is unreachable, except under CI where that fails."""
    url = urlparse(NATS_URL)
    try:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 4222), timeout=2):
            pass
    except OSError as exc:
        if IN_CI:
            pytest.fail(f"NATS is required under CI=true but is not reachable at {NATS_URL}: {exc}")
        pytest.skip(f"NATS not reachable at {NATS_URL} ({exc})")
    return NATS_URL


def unique_stream(**overrides: object) -> EventStreamSettings:
    """Stream and subjects of this test only (deleted by ``drop_stream``)."""
    tag = uuid.uuid4().hex[:10]
    return EventStreamSettings(name=f"TEST_EVENTS_{tag}", subject_prefix=f"test{tag}.events", **overrides)  # type: ignore[arg-type]


def drop_stream(url: str, name: str) -> None:
    from geofence.service.nats_bridge import NatsBridge

    bridge = NatsBridge(url, name="test-cleanup")
    try:
        bridge.call(bridge.js.delete_stream(name))
    except Exception:  # already gone
        pass
    finally:
        bridge.close()
