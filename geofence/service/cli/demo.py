"""CLI: demo commands."""

from __future__ import annotations

from geofence.service.cli.base import app  # noqa: F401
