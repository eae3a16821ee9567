"""Admin export API: streamed CSV / NDJSON, cursor header, errors, and the campaign stats endpoint."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from geofence.service.app import create_app
from geofence.service.tables.campaigns import Delivery
from geofence.service.tables.customers import ConsentEvent, Customer
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.zones import ZoneRow
from tests.conftest import make_key_headers

T0 = datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


@pytest.fixture
def client(settings, engine):
    with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as c:
        c.headers.update(make_key_headers(engine, "admin"))
        yield c


@pytest.fixture
def seeded(engine):
    with Session(engine) as s:
        s.add(Customer(id="u1", crm_id="HS-1", phone_e164="+33612345678", first_name="Léa", created_at=T0))
        s.add(Customer(id="u2", phone_e164="+33698765432", created_at=T0))
        for zid, store in (("walk-a", "store-a"), ("shop-a", "store-a")):
            s.add(ZoneRow(id=zid, name=zid, store_id=store, created_at=T0, updated_at=T0))
        s.add(ConsentEvent(id="k1", customer_id="u1", purpose="sms_marketing", granted=True,
                           occurred_at=T0, recorded_at=T0, source="app_screen", wording="Offres",
                           wording_version="v1"))  # fmt: skip
        s.add(Delivery(id="d1", idempotency_key="i1", campaign_id="camp", customer_id="u1",
                       zone_id="walk-a", visit_id="v1", channel="sms", provider="outbox", status="sent",
                       due_at=T0, created_at=T0, updated_at=T0, sent_at=T0))  # fmt: skip
        s.add(Delivery(id="d2", idempotency_key="i2", campaign_id="camp", customer_id="u2",
                       zone_id="walk-a", channel="sms", status="skipped", reason="holdout", due_at=T0,
                       created_at=T0))  # fmt: skip
        s.add(ZoneEventRow(id="e1", zone_id="shop-a", device_id="dev", customer_id="u1", kind="enter",
                           at=T0 + timedelta(minutes=20), visit_id="v2", reason="inside", lat=48.8412,
                           lng=2.4398, recorded_at=T0 + timedelta(minutes=20)))  # fmt: skip
        s.commit()


def test_customers_csv_streams_with_a_cursor_for_next_time(client, seeded):
    response = client.get("/v1/exports/customers", params={"format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {r["crm_id"] for r in rows} == {"HS-1", "u2"}
    cursor = response.headers["x-next-cursor"]
    again = client.get("/v1/exports/customers", params={"since": cursor})
    assert again.status_code == 200
    assert again.text.splitlines()[1:] == []  # header only: nothing changed since
    assert again.headers["x-next-cursor"] == cursor


def test_zone_events_ndjson_follow_segment_spec_with_store_visits(client, seeded):
    response = client.get("/v1/exports/zone_events", params={"format": "ndjson"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    records = [json.loads(line) for line in response.text.splitlines()]
    assert [r["event"] for r in records] == ["Zone Entered", "Store Visited"]
    assert records[1]["properties"]["store_id"] == "store-a"
    assert records[0]["userId"] == "HS-1"
    assert records[0]["properties"]["lat"] == 48.841  # rounded to ~100 m
    assert "+336" not in response.text


def test_deliveries_and_opt_outs_exports_answer(client, seeded):
    ndjson = client.get("/v1/exports/deliveries", params={"format": "ndjson"}).text
    assert sorted(json.loads(x)["event"] for x in ndjson.splitlines()) == ["Offer Sent", "Offer Skipped"]
    assert client.get("/v1/exports/opt_outs").status_code == 200
    assert client.get("/v1/exports").json()["kinds"] == [
        "customers", "consents", "opt_outs", "zone_events", "deliveries",
    ]  # fmt: skip


BAD_REQUESTS = [
    ("/v1/exports/passwords", {}, 404),
    ("/v1/exports/customers", {"format": "xml"}, 422),
    ("/v1/exports/customers", {"since": "not-a-cursor"}, 400),
    ("/v1/exports/customers", {"since": "x" * 5000}, 422),
    ("/v1/campaigns/nope/stats", {}, 404),
    ("/v1/campaigns/camp/stats", {"window_hours": -1}, 422),
]


def test_bad_requests_get_a_4xx_with_a_reason(client, seeded):
    for path, params, status in BAD_REQUESTS:  # one app per database, not one per case (suite speed)
        response = client.get(path, params=params)
        assert response.status_code == status, (path, params, response.text)
        assert response.json()["detail"]


def test_cursor_of_another_export_is_refused(client, seeded):
    cursor = client.get("/v1/exports/deliveries").headers["x-next-cursor"]
    response = client.get("/v1/exports/customers", params={"since": cursor})
    assert response.status_code == 400
    assert "deliveries" in response.json()["detail"]


def test_campaign_stats_counts_visits_and_uplift(client, seeded):
    stats = client.get("/v1/campaigns/camp/stats", params={"window_hours": 24}).json()
    assert stats["eligible"] == 2
    assert stats["sent"] == 1
    assert stats["skipped"] == {"holdout": 1}
    assert stats["conversions"] == 1 and stats["visits"] == 1
    assert stats["conversion_rate"] == 1.0
    assert stats["holdout_conversion_rate"] == 0.0
    assert stats["uplift"] == 1.0


def test_exports_require_the_admin_scope(secure_settings, engine):
    with TestClient(create_app(secure_settings, engine=engine)) as c:
        assert c.get("/v1/exports/customers").status_code == 401
        ingest = make_key_headers(engine, "ingest")
        assert c.get("/v1/exports/customers", headers=ingest).status_code == 403
