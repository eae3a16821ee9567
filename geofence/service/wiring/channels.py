"""Wiring for the channels domain: services, subscribers and jobs registered on the runtime."""

from __future__ import annotations

from campaigns.providers import build_providers
from geofence.service import clock
from geofence.service.runtime import Runtime


def setup(runtime: Runtime) -> None:
    """Register ``providers``: {"push": provider, "sms": provider} from ``settings.channels``.

    Providers are synchronous: the dispatcher calls them from scheduler threads (never from an async
    route), so firebase-admin and twilio never block the event loop.
    """
    runtime.services["providers"] = build_providers(runtime.settings, now=clock.now, engine=runtime.engine)
