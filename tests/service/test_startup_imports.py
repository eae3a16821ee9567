"""The embedded default (no ``GEOFENCE_BUS``, the local outbox channel) starts without the clients it does
not use: nats-py (and aiohttp under it), the provider SDKs' clients and their HTTP stack, the webhook
sender's httpx. Together they added ~1 s of CPU (measured under load: 3.4 -> 2.4 s) to every process's
start-up: an API process, a worker, a replacement ingest worker, each CLI command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.service.processes import ROOT

# twilio's request validator and TwiML builder are on it (every API process checks Twilio's inbound
# webhooks, ~15 ms); its REST client and HTTP stack are not
NOT_ON_THE_EMBEDDED_PATH = ("nats", "aiohttp", "requests", "urllib3", "httpx", "twilio.rest", "twilio.http",
                            "firebase_admin", "google")

# the app built, started (its lifespan: the zone index, the jobs of an all-in-one process) and stopped
PROBE = """
import asyncio, json, sys
from geofence.service.app import create_app
from geofence.service.cli import main

async def start_and_stop(app):
    async with app.router.lifespan_context(app):
        pass

asyncio.run(start_and_stop(create_app()))
unwanted = tuple(sys.argv[1].split(","))
print(json.dumps(sorted({u for u in unwanted for m in sys.modules if m == u or m.startswith(u + ".")})))
"""


def test_the_embedded_default_starts_without_the_bus_sdk_or_webhook_clients(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFENCE_")}
    env |= {"GEOFENCE_DATABASE_URL": f"sqlite:///{tmp_path}/probe.db", "GEOFENCE_OUTBOX_DIR": str(tmp_path),
            "GEOFENCE_EXPORT_DIR": str(tmp_path / "exports")}
    probe = [sys.executable, "-c", PROBE, ",".join(NOT_ON_THE_EMBEDDED_PATH)]
    done = subprocess.run(probe, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
