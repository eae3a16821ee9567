"""``geofence campaigns dry-run``: recorded events, clear errors, nothing written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlmodel import Session
from typer.testing import CliRunner

import geofence.service.cli.campaigns  # noqa: F401  (registers the command group)
from geofence.service.cli.base import app
from geofence.service.db import create_schema, make_engine
from geofence.service.settings import get_settings
from geofence.service.tables.campaigns import Delivery
from tests.service.campaign_factories import add_campaign, add_customer, add_zone, add_zone_event

MONDAY_1145 = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("GEOFENCE_DATABASE_URL", url)
    get_settings.cache_clear()
    engine = make_engine(url)
    create_schema(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()
    get_settings.cache_clear()


def test_dry_run_recorded_events(db: Session) -> None:
    add_zone(db, MONDAY_1145)
    add_customer(db, MONDAY_1145, cid="ana", device_id="d-ana")
    add_zone_event(db, event_id="e1", at=MONDAY_1145, device_id="d-ana")
    add_zone_event(db, event_id="e2", at=MONDAY_1145, device_id="d-unknown", visit_id="v2")
    add_campaign(
        db,
        MONDAY_1145,
        {
            "id": "lunch",
            "name": "Lunch",
            "trigger": {"zone_ids": ["z1"]},
            "templates": {"fr": {"body": "Bonjour {first_name}"}},
            "windows": [{"days": "mon-fri", "start": "11:30", "end": "12:00"}],
        },
    )
    runner = CliRunner()
    result = runner.invoke(
        app, ["campaigns", "dry-run", "lunch", "--since", "2026-11-23T00:00:00Z", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["outcomes"] == {"send": 1, "skip": 1}
    assert report["skip_reasons"] == {"unknown_customer": 1}
    text = runner.invoke(app, ["campaigns", "dry-run", "lunch"])
    assert text.exit_code == 0 and "reason=unknown_customer" in text.output
    assert db.execute(select(Delivery)).scalars().all() == []


def test_dry_run_errors_are_clear(db: Session) -> None:
    runner = CliRunner()
    missing = runner.invoke(app, ["campaigns", "dry-run", "nope"])
    assert missing.exit_code == 2 and "not found" in missing.output
    bad = runner.invoke(app, ["campaigns", "dry-run", "nope", "--since", "last tuesday"])
    assert bad.exit_code == 2


# The real Sénart trace (IGN / LASTIG, CeCILL-C) as shipped inside the package for the demo.
TRACE = Path(__file__).resolve().parents[2] / "geofence" / "demo_data" / "senart-2019-07-12.gpx"


def test_dry_run_of_a_trace_writes_nothing(db: Session) -> None:
    assert TRACE.exists(), TRACE
    from geofence.service.tables.zones import ZoneRow
    from zones.model import Circle, Zone

    at = datetime(2019, 7, 1, tzinfo=UTC)
    zone = Zone(
        id="z1", name="Sénart store", geometry=Circle(48.66748, 2.52754, 150.0), tags=frozenset({"store"})
    )
    db.add(ZoneRow(id="z1", name=zone.name, data=zone.to_dict(), created_at=at, updated_at=at))
    db.commit()
    add_customer(db, at, cid="walker", device_id="replay")
    add_campaign(
        db,
        at,
        {
            "id": "walk",
            "name": "Walk-by",
            "trigger": {"zone_tags": ["store"], "kinds": ["enter", "dwell", "exit"]},
            "templates": {"fr": {"body": "Bonjour {first_name}"}},
        },
    )
    result = CliRunner().invoke(app, ["campaigns", "dry-run", "walk", "--trace", str(TRACE), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["events"] >= 1
    assert report["rows"][0]["zone_id"] == "z1"
    assert "send" in report["outcomes"]  # the walker consents and the trace is on a Friday at 19:00 Paris
    assert db.execute(select(Delivery)).scalars().all() == []
