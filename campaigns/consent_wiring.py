"""Registers the consent services on the runtime (called from ``wiring/campaigns.py:setup``).

- ``location_consent_filter(session, device_ids) -> set[str]``: the devices whose customer holds
  ``location_offers`` consent now. The location feed drops, unstored, the fixes of every other device.
- ``current_consent(session, customer_id) -> {Purpose: bool}``: the ledger state now, SMS suppression
  applied (for the send decision's final re-check).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session

from campaigns.consent import Purpose
from campaigns.customers import current_consent, location_consented_devices


def setup_consent(runtime: Any) -> None:
    from geofence.service import clock  # the adapter's only wall-clock read

    def location_consent_filter(session: Session, device_ids: Iterable[str]) -> set[str]:
        return location_consented_devices(session, device_ids, at=clock.now())

    def consent_now(session: Session, customer_id: str) -> dict[Purpose, bool]:
        return current_consent(session, customer_id, at=clock.now())

    runtime.services["location_consent_filter"] = location_consent_filter
    runtime.services["current_consent"] = consent_now
