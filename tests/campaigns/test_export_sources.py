"""Export reads on SQLite and PostgreSQL: keyset batches, snapshot cursor, enrichment, files."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from campaigns.export import CursorError, UnknownKind, count_rows, plan_export
from campaigns.export.pipeline import render_plan, write_export
from campaigns.export.sources import iter_records
from geofence.service.tables.campaigns import Delivery
from geofence.service.tables.customers import ConsentEvent, Customer
from geofence.service.tables.presence import ZoneEventRow

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


def _add_customer(session: Session, cid: str, **kw) -> None:
    session.add(Customer(id=cid, phone_e164="+33612345678", first_name="Léa", created_at=T0, **kw))


def _add_event(session: Session, eid: str, at: datetime, *, customer_id="c1", kind="enter", zone="z1",
               visit="v1") -> None:  # fmt: skip
    session.add(
        ZoneEventRow(
            id=eid,
            zone_id=zone,
            device_id="dev-1",
            customer_id=customer_id,
            kind=kind,
            at=at,
            visit_id=visit,
            reason="inside",
            lat=48.841,
            lng=2.44,
            recorded_at=at,
        )
    )


def _add_consent(session: Session, cid: str, purpose: str, granted: bool, at: datetime, eid: str) -> None:
    session.add(
        ConsentEvent(
            id=eid,
            customer_id=cid,
            purpose=purpose,
            granted=granted,
            occurred_at=at,
            recorded_at=at,
            source="app_screen" if granted else "sms_keyword",
            wording="Offres près de vous",
            wording_version="v1",
            recorded_by="test",
            evidence={"app_version": "1.2"},
        )
    )


def test_zone_events_export_in_batches_then_incrementally(engine):
    with Session(engine) as s:
        _add_customer(s, "c1", crm_id="HS-1")
        for i in range(25):
            _add_event(s, f"e{i:03d}", T0 + timedelta(minutes=i))
        s.commit()
    plan = plan_export(engine, "zone_events", None, at=NOW)
    assert count_rows(engine, plan) == 25
    records = list(iter_records(engine, plan, batch_size=7))
    assert [r.id for r in records] == [f"e{i:03d}" for i in range(25)]
    assert records[0].party.user_id == "HS-1"
    assert records[0].at == T0

    with Session(engine) as s:
        _add_event(s, "e100", T0 + timedelta(hours=5))
        s.commit()
    again = plan_export(engine, "zone_events", plan.next_cursor, at=NOW)
    assert [r.id for r in iter_records(engine, again, batch_size=7)] == ["e100"]
    nothing = plan_export(engine, "zone_events", again.next_cursor, at=NOW)
    assert list(iter_records(engine, nothing)) == []
    assert nothing.next_cursor == again.next_cursor  # nothing new: the cursor does not move


def test_rows_sharing_a_timestamp_are_neither_lost_nor_repeated_across_batches(engine):
    with Session(engine) as s:
        _add_customer(s, "c1")
        for i in range(10):
            _add_event(s, f"same-{i}", T0)
        s.commit()
    plan = plan_export(engine, "zone_events", None, at=NOW)
    ids = [r.id for r in iter_records(engine, plan, batch_size=3)]
    assert ids == sorted(f"same-{i}" for i in range(10))


def test_snapshot_leaves_rows_changed_during_the_settle_delay_for_next_time(engine):
    with Session(engine) as s:
        _add_customer(s, "c1")
        _add_event(s, "old", NOW - timedelta(minutes=1))
        _add_event(s, "fresh", NOW - timedelta(milliseconds=500))
        s.commit()
    plan = plan_export(engine, "zone_events", None, at=NOW, settle_s=2)
    assert [r.id for r in iter_records(engine, plan)] == ["old"]
    later = plan_export(engine, "zone_events", plan.next_cursor, at=NOW + timedelta(seconds=5))
    assert [r.id for r in iter_records(engine, later)] == ["fresh"]


def test_customers_export_carries_current_consent_and_last_visit(engine):
    with Session(engine) as s:
        _add_customer(s, "c1", crm_id="HS-1")
        _add_customer(s, "c2")
        _add_consent(s, "c1", "sms_marketing", True, T0, "k1")
        _add_consent(s, "c1", "location_offers", True, T0, "k2")
        _add_consent(s, "c1", "sms_marketing", False, T0 + timedelta(hours=2), "k3")
        _add_event(s, "e1", T0 + timedelta(hours=1), visit="v1")
        _add_event(s, "e2", T0 + timedelta(hours=3), zone="z2", visit="v2", kind="dwell")
        _add_event(s, "e3", T0 + timedelta(hours=4), zone="z2", visit="v2", kind="exit")
        s.commit()
    plan = plan_export(engine, "customers", None, at=NOW)
    text = "".join(render_plan(engine, plan, "csv"))
    rows = {r["geofence_customer_id"]: r for r in csv.DictReader(io.StringIO(text))}
    assert rows["c1"]["crm_id"] == "HS-1"
    assert rows["c1"]["consent_sms_marketing"] == "false"  # withdrawn later
    assert rows["c1"]["consent_location_offers"] == "true"
    assert rows["c1"]["last_visit_zone_id"] == "z2"
    assert rows["c1"]["store_visits"] == "2"
    assert rows["c2"]["crm_id"] == "c2" and rows["c2"]["last_visit_at"] == ""

    ndjson = [json.loads(line) for line in "".join(render_plan(engine, plan, "ndjson")).splitlines()]
    assert {r["type"] for r in ndjson} == {"identify"}
    assert {r["userId"] for r in ndjson} == {"HS-1", "c2"}


def test_opt_outs_export_only_withdrawals_with_proof(engine):
    with Session(engine) as s:
        _add_customer(s, "c1")
        _add_consent(s, "c1", "sms_marketing", True, T0, "k1")
        _add_consent(s, "c1", "sms_marketing", False, T0 + timedelta(hours=2), "k2")
        s.commit()
    plan = plan_export(engine, "opt_outs", None, at=NOW)
    lines = "".join(render_plan(engine, plan, "ndjson")).splitlines()
    assert [json.loads(x)["event"] for x in lines] == ["Unsubscribed"]
    consents = "".join(render_plan(engine, plan_export(engine, "consents", None, at=NOW), "csv"))
    rows = list(csv.DictReader(io.StringIO(consents)))
    assert [r["status"] for r in rows] == ["opt_in", "opt_out"]
    assert rows[1]["source"] == "sms_keyword" and rows[1]["wording_version"] == "v1"


def test_deliveries_export_re_emits_a_row_when_its_status_changes(engine):
    with Session(engine) as s:
        _add_customer(s, "c1")
        s.add(Delivery(id="d1", idempotency_key="k1", campaign_id="camp", customer_id="c1", zone_id="z1",
                       channel="sms", provider="twilio", status="sent", due_at=T0, created_at=T0,
                       updated_at=T0, sent_at=T0))  # fmt: skip
        s.add(Delivery(id="d2", idempotency_key="k2", campaign_id="camp", customer_id="c1", channel="sms",
                       status="skipped", reason="holdout", due_at=T0, created_at=T0))  # fmt: skip
        s.commit()
    first = plan_export(engine, "deliveries", None, at=NOW)
    events = [json.loads(x) for x in "".join(render_plan(engine, first, "ndjson")).splitlines()]
    assert sorted(e["event"] for e in events) == ["Offer Sent", "Offer Skipped"]
    with Session(engine) as s:
        row = s.get(Delivery, "d1")
        row.status, row.delivered_at, row.updated_at = (
            "delivered",
            T0 + timedelta(minutes=1),
            T0 + timedelta(minutes=1),
        )
        s.add(row)
        s.commit()
    second = plan_export(engine, "deliveries", first.next_cursor, at=NOW)
    again = [json.loads(x) for x in "".join(render_plan(engine, second, "ndjson")).splitlines()]
    assert [e["event"] for e in again] == ["Offer Sent", "Offer Delivered"]
    sent_ids = {e["messageId"] for e in events if e["event"] == "Offer Sent"}
    assert again[0]["messageId"] in sent_ids


def test_write_export_writes_a_complete_file_atomically(engine, tmp_path):
    with Session(engine) as s:
        _add_customer(s, "c1")
        _add_event(s, "e1", T0)
        s.commit()
    plan = plan_export(engine, "zone_events", None, at=NOW)
    written = write_export(engine, plan, "csv", tmp_path / "out" / "zone_events.csv")
    assert written.bytes == written.path.stat().st_size > 0
    assert written.next_cursor == plan.next_cursor
    assert not list((tmp_path / "out").glob(".*.part"))


def test_unknown_kind_and_bad_cursor_are_clear_errors(engine):
    with pytest.raises(UnknownKind, match="customers"):
        plan_export(engine, "passwords", None, at=NOW)
    with pytest.raises(CursorError):
        plan_export(engine, "customers", "garbage!", at=NOW)


def test_a_consent_change_re_exports_the_contact_with_its_new_flags(engine):
    with Session(engine) as s:
        _add_customer(s, "c1", crm_id="HS-1")
        _add_consent(s, "c1", "sms_marketing", True, T0, "k1")
        s.commit()
    first = plan_export(engine, "customers", None, at=NOW)
    assert [r.consent["sms_marketing"] for r in iter_records(engine, first)] == [True]
    assert list(iter_records(engine, plan_export(engine, "customers", first.next_cursor, at=NOW))) == []
    with Session(engine) as s:
        _add_consent(s, "c1", "sms_marketing", False, T0 + timedelta(hours=1), "k2")  # a STOP
        s.commit()
    second = plan_export(engine, "customers", first.next_cursor, at=NOW)
    (again,) = iter_records(engine, second)
    assert again.consent["sms_marketing"] is False
    assert again.changed_at == T0 + timedelta(hours=1)
    with Session(engine) as s:
        _add_event(s, "e9", T0 + timedelta(hours=2))  # a new visit refreshes the last-visit summary
        s.commit()
    (third,) = iter_records(engine, plan_export(engine, "customers", second.next_cursor, at=NOW))
    assert third.last_visit.at == T0 + timedelta(hours=2)
