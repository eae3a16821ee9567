"""Helpers for the consent domain's API tests."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from geofence.service.app import create_app


def build_app(settings: Any, engine: Any) -> FastAPI:
    """``create_app(settings, engine=..., run_jobs=False)``: no scheduler threads in tests."""
    return create_app(settings, engine=engine, run_jobs=False)


def import_cli_app() -> Any:
    """The Typer app (importing it registers every command module)."""
    from geofence.service.cli import app

    return app
