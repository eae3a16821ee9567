"""``geofence`` command line. Each module registers its commands on the shared Typer app."""

from __future__ import annotations

import importlib

from geofence.service.cli.base import app

COMMAND_MODULES = (
    "serve", "zones", "replay", "customers", "campaigns", "export", "keys", "demo", "db", "webhooks",
    "ingest_worker",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def main() -> None:
    app()
