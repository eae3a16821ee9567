"""What the demo is made of: its stores and REAL GPS traces, customers with proven consents, campaigns,
and the simulated clock the replay runs on (``geofence.service.demo`` runs it).

Apart from the steps so that a reader finds the scenario (who walks where, when, with which consents,
which offers apply) in one place, and the tests can load its data without running the demo.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from geofence.fixes import LocationFix

STORE_TZ = "Europe/Paris"
PARIS = ZoneInfo(STORE_TZ)
BATCH = timedelta(seconds=60)  # fixes are ingested one simulated minute at a time
STOP_SENDER = "36111"  # a French marketing short code (36xxx)
APP_VERSION = "demo-1.0"
CONSENT_EVIDENCE = {"screen": "onboarding/offers", "app_version": APP_VERSION}


# --- the simulated clock ---------------------------------------------------------------------------


class SimulatedClock:
    """Monotonic replay time: ``set`` never goes backwards."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = max(self.at, at)


@contextmanager
def simulated_clock(start: datetime) -> Iterator[SimulatedClock]:
    """Route ``geofence.service.clock.now`` to a simulated clock for the block (restored after)."""
    from geofence.service import clock

    sim = SimulatedClock(start)
    original = clock.now
    clock.now = sim.now  # type: ignore[assignment]
    try:
        yield sim
    finally:
        clock.now = original  # type: ignore[assignment]


# --- demo data -----------------------------------------------------------------------------------


def data_file(name: str) -> Path:
    return Path(str(resources.files("geofence") / "demo_data" / name))


def load_stores() -> list[dict[str, Any]]:
    return list(json.loads(data_file("stores.json").read_text(encoding="utf-8"))["stores"])


def load_trace(name: str, device_id: str) -> list[LocationFix]:
    from geofence.traces import read_trace

    fixes, _errors = read_trace(data_file(name).read_text(encoding="utf-8"), name=name, device_id=device_id)
    return sorted(fixes, key=lambda f: f.recorded_at)


@dataclass(frozen=True)
class DemoCustomer:
    key: str
    first_name: str
    crm_id: str
    phone: str  # made up; the demo never leaves the machine (local outbox channel)
    device_id: str
    platform: str
    push_token: str | None
    purposes: tuple[str, ...]  # consents granted (with proof)


CUSTOMERS = (
    DemoCustomer("camille", "Camille", "CRM-1001", "+33612345601", "demo-phone-camille", "android",
                 "demo-fcm-token-camille", ("location_offers", "push_marketing")),
    DemoCustomer("karim", "Karim", "CRM-1002", "+33612345642", "demo-phone-karim", "ios", None,
                 ("location_offers", "sms_marketing")),
    DemoCustomer("ines", "Inès", "CRM-1003", "+33612345677", "demo-phone-ines", "android", None,
                 ("location_offers",)),  # no SMS consent: her offers are skipped, with the reason
)  # fmt: skip

CONSENT_WORDING = {
    "location_offers": "Utiliser ma position pour me proposer des offres des magasins proches (v2).",
    "push_marketing": "Recevoir des offres par notification.",
    "sms_marketing": "Recevoir des offres par SMS. STOP au 36111 pour ne plus en recevoir.",
}


def campaign_definitions() -> list[dict[str, Any]]:
    return [
        {
            "id": "lunch-walk", "name": "Lunch offer (walking zones)", "status": "active", "priority": 1,
            "trigger": {"kinds": ["enter", "dwell"], "zone_tags": ["walking"]},
            "channel": "push",
            "templates": {
                "fr": {"title": "Pause déjeuner ?", "body": "{first_name}, -20 % sur la formule midi chez "
                       "{store_name} aujourd'hui (jusqu'à {offer_expiry})."},
                "en": {"title": "Lunch break?", "body": "{first_name}, 20% off the lunch menu at "
                       "{store_name} today (until {offer_expiry})."},
            },
            "windows": [{"days": "mon-fri", "start": "12:00", "end": "14:00"}],
            "offer_ttl_s": 3600,
        },
        {
            "id": "after-work-drive", "name": "After-work offer (driving zones)", "status": "active",
            "priority": 1,
            "trigger": {"kinds": ["enter"], "zone_tags": ["driving"]},
            "channel": "sms",
            "templates": {
                "fr": {"body": "{first_name}, ce soir -10 % chez {store_name} jusqu'à {offer_expiry}."},
            },
            "windows": [{"days": "mon-fri", "start": "17:30", "end": "18:30"}],
            "caps": {"cooldown_s": 0},  # one offer per store visit, several stores per evening
            "offer_ttl_s": 5400,
            "advertiser": "Demo Retail",
            "sender": STOP_SENDER,
        },
    ]  # fmt: skip
