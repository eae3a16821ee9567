"""Admin API for campaigns: validation reasons (422), pagination, status transitions, SMS cost on save,
dry run over recorded zone events — on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from geofence.service.routes import campaigns as campaign_routes
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import Delivery
from tests.service.campaign_factories import add_customer, add_zone, add_zone_event

MONDAY_1145 = datetime(2026, 11, 23, 10, 45, tzinfo=UTC)


@pytest.fixture
def client(engine: Engine, settings: Settings) -> Iterator[TestClient]:
    # Only this router: the API must not depend on other domains being importable to be tested.
    app = FastAPI()
    app.state.runtime = bootstrap(settings, engine)
    app.include_router(campaign_routes.router)
    with TestClient(app) as c:
        yield c


def definition(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "lunch",
        "name": "Lunch",
        "trigger": {"zone_tags": ["restaurant"], "kinds": ["enter"]},
        "channel": "push",
        "templates": {"fr": {"title": "Bonjour {first_name}", "body": "-10% chez {store_name}"}},
        "windows": [{"days": "mon-fri", "start": "11:30", "end": "12:00"}],
    }
    data.update(overrides)
    return data


def test_create_get_and_list_with_pagination(client: TestClient) -> None:
    for i in range(3):
        r = client.post("/v1/campaigns", json=definition(id=f"c{i}", name=f"Campaign {i}"))
        assert r.status_code == 201, r.text
        assert r.headers["location"] == f"/v1/campaigns/c{i}"
    body = client.get("/v1/campaigns/c1").json()
    assert (body["status"], body["version"]) == ("draft", 1)
    assert body["definition"]["windows"] == [
        {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "11:30", "end": "12:00"}
    ]
    first = client.get("/v1/campaigns", params={"limit": 2}).json()
    assert [c["id"] for c in first["items"]] == ["c0", "c1"]
    second = client.get("/v1/campaigns", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [c["id"] for c in second["items"]] == ["c2"] and second["next_cursor"] is None
    assert client.get("/v1/campaigns", params={"status": "active"}).json()["items"] == []
    assert client.get("/v1/campaigns/nope").status_code == 404
    assert client.post("/v1/campaigns", json=definition(id="c0")).status_code == 409


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (definition(templates={"fr": {"body": "Hello {nickname}"}}), "unknown placeholder"),
        (definition(windows=[{"days": "funday", "start": "11:30", "end": "12:00"}]), "unknown day"),
        (definition(windows=[{"days": "mon", "start": "25:00", "end": "12:00"}]), "out of range"),
        (definition(trigger={"kinds": ["enter"]}), "zone_ids or zone_tags"),
        (definition(out_of_window={"mode": "defer"}), "max_delay_s"),
        (definition(starts_at="2026-11-23T10:00:00"), "time zone offset"),
        (definition(channel="fax"), "channel"),
        (definition(templates={"en": {"body": "x"}}), "default locale"),
        (definition(audience={"all": [{"attribute": "tier", "op": "in", "value": "gold"}]}), "list"),
        (definition(channel="sms", sender="SHOPNAME"), "alphanumeric"),
        ([1, 2, 3], ""),
        ("not an object", ""),
    ],
)
def test_invalid_definitions_are_422_with_reasons(client: TestClient, body: Any, fragment: str) -> None:
    r = client.post("/v1/campaigns", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.text


def test_sms_templates_report_encoding_and_segments(client: TestClient) -> None:
    long_body = (
        "Profitez de -20% sur toute la boutique aujourd'hui seulement, présentez ce message en caisse. " * 3
    )
    r = client.post(
        "/v1/campaigns",
        json=definition(
            channel="push_then_sms",
            sender="36111",
            advertiser="Lumière",
            templates={"fr": {"body": "-10% chez {store_name}"}, "en": {"body": long_body + " 🎉"}},
        ),
    )
    assert r.status_code == 201, r.text
    sms = {c["locale"]: c for c in r.json()["sms"]}
    assert sms["fr"]["encoding"] == "GSM-7" or sms["fr"]["encoding"].upper().startswith("GSM")
    assert sms["fr"]["segments"] == 1 and sms["fr"]["warning"] is None
    assert sms["en"]["encoding"].upper().startswith("UCS")
    assert sms["en"]["segments"] > 2
    assert r.json()["warnings"] and "segments" in r.json()["warnings"][0]


def test_status_transitions(client: TestClient) -> None:
    client.post("/v1/campaigns", json=definition())
    assert client.post("/v1/campaigns/lunch/status", json={"status": "active"}).json()["status"] == "active"
    assert client.post("/v1/campaigns/lunch/status", json={"status": "paused"}).json()["status"] == "paused"
    assert client.post("/v1/campaigns/lunch/status", json={"status": "ended"}).json()["status"] == "ended"
    r = client.post("/v1/campaigns/lunch/status", json={"status": "active"})
    assert r.status_code == 409 and "ended is final" in r.text
    assert client.put("/v1/campaigns/lunch", json=definition()).status_code == 409
    assert client.post("/v1/campaigns/lunch/status", json={"status": "bogus"}).status_code == 422


def test_replace_keeps_status_and_bumps_version(client: TestClient) -> None:
    client.post("/v1/campaigns", json=definition())
    client.post("/v1/campaigns/lunch/status", json={"status": "active"})
    r = client.put("/v1/campaigns/lunch", json=definition(name="Lunch v2", status="draft"))
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["status"], r.json()["version"]) == ("Lunch v2", "active", 3)
    assert client.put("/v1/campaigns/lunch", json=definition(windows="nope")).status_code == 422


def test_dry_run_over_recorded_events(client: TestClient, session: Session) -> None:
    add_zone(session, MONDAY_1145)
    add_customer(session, MONDAY_1145, cid="ana", device_id="d-ana")
    add_customer(
        session, MONDAY_1145, cid="bob", device_id="d-bob", phone="+33698765432", consents=("push_marketing",)
    )
    add_zone_event(session, event_id="e1", at=MONDAY_1145, device_id="d-ana", visit_id="v1")
    add_zone_event(session, event_id="e2", at=MONDAY_1145, device_id="d-bob", visit_id="v2")
    add_zone_event(
        session, event_id="e3", at=MONDAY_1145 + timedelta(minutes=3), device_id="d-ana", visit_id="v3"
    )  # cooldown
    add_zone_event(session, event_id="e4", at=MONDAY_1145 + timedelta(hours=9), device_id="d-stranger")
    add_zone_event(session, event_id="other-zone", at=MONDAY_1145, device_id="d-ana", zone_id="z9")
    add_zone_event(session, event_id="exit", at=MONDAY_1145, device_id="d-ana", kind="exit")
    client.post("/v1/campaigns", json=definition())  # a draft can be dry-run
    r = client.post("/v1/campaigns/lunch/dry-run", json={"since": "2026-11-23T00:00:00Z"})
    assert r.status_code == 200, r.text
    report = r.json()
    by_event = {row["event_id"]: row for row in report["rows"]}
    assert by_event["e1"]["outcome"] == "send"
    assert by_event["e1"]["body"] == "-10% chez Café Lumière"
    assert by_event["e2"]["reason"] == "no_consent:location_offers"
    assert by_event["e3"]["reason"].startswith("cap:")
    assert by_event["e4"]["reason"] == "unknown_customer"
    assert report["recipients"] == 1 and report["outcomes"] == {"send": 1, "skip": 3}
    assert "other-zone" not in by_event and "exit" not in by_event  # not this campaign's trigger
    assert session.execute(select(Delivery)).scalars().all() == []  # nothing written


def test_dry_run_with_given_events_and_bad_input(client: TestClient, session: Session) -> None:
    add_zone(session, MONDAY_1145)
    add_customer(session, MONDAY_1145, cid="ana", device_id="d-ana")
    client.post("/v1/campaigns", json=definition(out_of_window={"mode": "defer", "max_delay_s": 7200}))
    events = [
        {"id": "x1", "zone_id": "z1", "device_id": "d-ana", "kind": "enter", "at": "2026-11-23T09:45:00Z"}
    ]
    report = client.post("/v1/campaigns/lunch/dry-run", json={"events": events}).json()
    (row,) = report["rows"]
    assert (row["outcome"], row["send_at"]) == ("defer", "2026-11-23T10:30:00+00:00")
    assert client.post("/v1/campaigns/lunch/dry-run", json={"since": "yesterday"}).status_code == 422
    assert (
        client.post("/v1/campaigns/lunch/dry-run", json={"since": "2026-11-23T00:00:00"}).status_code == 422
    )
    assert client.post("/v1/campaigns/nope/dry-run", json={}).status_code == 404
