"""Wiring for the campaigns domain: services, subscribers and jobs registered on the runtime."""

from __future__ import annotations

from geofence.service.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Register this domain's services on the runtime."""
    __import__("campaigns.consent_wiring", fromlist=["setup_consent"]).setup_consent(runtime)
