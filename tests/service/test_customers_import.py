"""Bulk CSV import with consents: per-line errors, idempotence, suppression after erasure, CLI."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from typer.testing import CliRunner

from campaigns import customers as uc
from campaigns.consent import Purpose
from campaigns.customer_import import import_customers
from campaigns.privacy import erase_customer
from geofence.service.location_data import SqlLocationData
from geofence.service.settings import Settings, get_settings
from geofence.service.tables.customers import ConsentEvent, Customer
from tests.service.consent_helpers import build_app, import_cli_app

AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
KEY = "test-hash-key"

HEADER = (
    "crm_id,phone,first_name,locale,tz,country,sms_marketing,push_marketing,location_offers,"
    "consent_wording,consent_version,consent_at,attr_tier,attr_store\n"
)
GOOD = HEADER + (
    "c1,06 12 34 56 78,Ann,fr,Europe/Paris,FR,yes,oui,1,Offres SMS ?,v3,2025-06-01T10:00:00Z,gold,Lyon\n"
    'c2,+14155552671,"Bob, Jr",en-US,America/New_York,US,no,true,,"Texts?",v3,2025-06-01,,\n'
    "c3,,Cy,fr,Europe/Paris,FR,,,,,,,,\n"
)


def run(session, text, at=AT):
    report = import_customers(session, io.StringIO(text, newline=""), at=at, hash_key=KEY)
    session.commit()
    return report


def state(session, crm_id):
    customer = uc.find_by_crm_id(session, crm_id)
    return uc.current_consent(session, customer.id, at=AT)


def test_good_file_creates_customers_with_their_consents_and_proof(session):
    report = run(session, GOOD)
    assert (report.lines, report.created, report.updated, report.failed) == (3, 3, 0, 0)
    assert report.consents_recorded == 4  # c1: 3 grants; c2: push (no sms withdrawal: nothing to withdraw)
    # the file's columns are the three marketing purposes; the others stay as they were (none)
    imported = (Purpose.SMS_MARKETING, Purpose.PUSH_MARKETING, Purpose.LOCATION_OFFERS)
    assert state(session, "c1") == {p: p in imported for p in Purpose}
    assert state(session, "c2") == {p: p is Purpose.PUSH_MARKETING for p in Purpose}
    c1 = uc.find_by_crm_id(session, "c1")
    assert c1.phone_e164 == "+33612345678" and c1.attributes == {"tier": "gold", "store": "Lyon"}
    assert uc.find_by_crm_id(session, "c2").first_name == "Bob, Jr"
    event = uc.ledger(session, c1.id)[0]
    assert (event.source, event.wording, event.wording_version) == ("import", "Offres SMS ?", "v3")
    assert event.evidence == {"import_line": 2}
    assert event.occurred_at.replace(tzinfo=UTC) == datetime(2025, 6, 1, 10, tzinfo=UTC)
    c2_event = uc.ledger(session, uc.find_by_crm_id(session, "c2").id)[0]
    # a date without offset is read in the row's time zone (midnight in New York, EDT = 04:00 UTC)
    assert c2_event.occurred_at.replace(tzinfo=UTC) == datetime(2025, 6, 1, 4, tzinfo=UTC)


def test_reimporting_the_same_file_adds_nothing_to_the_ledger(session):
    run(session, GOOD)
    before = len(session.exec(select(ConsentEvent)).all())
    report = run(session, GOOD, at=AT + timedelta(days=1))
    assert (report.created, report.updated, report.consents_recorded) == (0, 3, 0)
    assert len(session.exec(select(ConsentEvent)).all()) == before


def test_a_withdrawal_in_a_later_file_is_appended(session):
    run(session, GOOD)
    report = run(session, HEADER + "c1,,,,,,no,,,,,2026-01-01T00:00:00+01:00,,\n")
    assert report.consents_recorded == 1
    assert state(session, "c1")[Purpose.SMS_MARKETING] is False
    assert state(session, "c1")[Purpose.PUSH_MARKETING] is True


def test_bad_lines_are_reported_by_number_and_reason_and_good_lines_are_kept(session):
    text = HEADER + (
        "ok1,06 12 34 56 78,A,fr,Europe/Paris,FR,yes,,,w,v,2025-01-01T00:00:00Z,,\n"  # line 2
        "bad-phone,12345,B,fr,Europe/Paris,FR,,,,,,,,\n"  # line 3
        ",06 12 34 56 79,C,fr,Europe/Paris,FR,,,,,,,,\n"  # line 4
        "bad-flag,,D,fr,Europe/Paris,FR,maybe,,,,,,,\n"  # line 5
        "no-date,,E,fr,Europe/Paris,FR,,yes,,,,,,\n"  # line 6
        "future,,F,fr,Europe/Paris,FR,,yes,,,,2030-01-01,,\n"  # line 7
        "bad-tz,,G,fr,Mars/Base,FR,,,,,,,,\n"  # line 8
        "short,row\n"  # line 9
        "bad-date,,H,fr,Europe/Paris,FR,,yes,,,,last tuesday,,\n"  # line 10
        "ok2,,I,fr,Europe/Paris,FR,,yes,yes,w,v,2025-01-01,,\n"  # line 11
    )
    report = run(session, text)
    reasons = {p.line: p.reason for p in report.errors}
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert "phone" in reasons[3]
    assert "crm_id" in reasons[4]
    assert "yes/no" in reasons[5]
    assert "consent_at is required" in reasons[6]
    assert "future" in reasons[7]
    assert "time zone" in reasons[8]
    assert "fields" in reasons[9]
    assert "ISO 8601" in reasons[10]
    crm_ids = {c.crm_id for c in session.exec(select(Customer))}
    assert crm_ids == {"ok1", "ok2"}  # a failed line leaves nothing behind (not even its customer)
    assert state(session, "ok2")[Purpose.LOCATION_OFFERS] is True


def test_unusable_header_rejects_the_file(session):
    with pytest.raises(uc.CustomerError, match="crm_id"):
        run(session, "phone,first_name\n+33612345678,A\n")
    with pytest.raises(uc.CustomerError):
        run(session, "")


def test_erase_then_reimport_stays_suppressed(session):
    run(session, GOOD)
    c1 = uc.find_by_crm_id(session, "c1")
    erase_customer(session, c1.id, at=AT + timedelta(hours=1), location=SqlLocationData())
    session.commit()
    report = run(session, GOOD, at=AT + timedelta(days=1))
    assert [(p.line, "suppressed" in p.reason) for p in report.suppressed] == [(2, True)]
    assert report.failed == 0
    back = uc.find_by_crm_id(session, "c1")
    assert back.id != c1.id and back.phone_e164 == "+33612345678"  # a new customer record...
    assert state(session, "c1") == {
        Purpose.SMS_MARKETING: False,  # ...that SMS marketing can never reach
        Purpose.PUSH_MARKETING: True,
        Purpose.LOCATION_OFFERS: True,
        Purpose.STORE_WELCOME: False,
        Purpose.ORDER_UPDATES: False,
    }
    assert session.get(Customer, c1.id).phone_e164 is None


# --- over HTTP and from the CLI ------------------------------------------------------------------


def test_import_endpoint_reports_lines(engine, tmp_path):
    settings = Settings(
        env="test", public_base_url="http://127.0.0.1:8000",
        database_url=str(engine.url),
        scheduler={"enabled": False},
        auth_required=False,
        migrate_on_start=False,
        hash_key=KEY,
        outbox_dir=tmp_path / "o",
        export_dir=tmp_path / "e",
    )
    with TestClient(build_app(settings, engine)) as client:
        response = client.post(
            "/v1/customers/import",
            content=(GOOD + "c4,not-a-phone,,,,,,,,,,,,\n").encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["created"], body["errors"][0]["line"]) == (3, 5)
        assert client.post("/v1/customers/import", content=b"\xff\xfe", headers={}).status_code == 400
        assert client.post("/v1/customers/import", content=b"x,y\n1,2\n").status_code == 422
    with Session(engine) as s:
        assert uc.find_by_crm_id(s, "c1") is not None


def test_cli_import_keeps_good_lines_and_names_bad_ones(engine, tmp_path, monkeypatch):
    app = import_cli_app()

    monkeypatch.setenv("GEOFENCE_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("GEOFENCE_MIGRATE_ON_START", "false")
    monkeypatch.setenv("GEOFENCE_HASH_KEY", KEY)
    get_settings.cache_clear()
    path = tmp_path / "customers.csv"
    path.write_text(GOOD + "c4,not-a-phone,,,,,,,,,,,,\n", encoding="utf-8")
    try:
        result = CliRunner().invoke(app, ["customers", "import", str(path)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1, result.output
    assert "line 5" in result.output and "phone" in result.output
    assert "3 created" in result.output
    with Session(engine) as s:
        assert {c.crm_id for c in s.exec(select(Customer))} == {"c1", "c2", "c3"}
