"""Pure export renderers: cursor, CSV rows (HubSpot / consent proof), Segment records, writers."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.export.csv_rows import (
    CONSENT_HEADER,
    CUSTOMER_HEADER,
    cell,
    consent_row,
    customer_row,
    iso_utc,
    zone_event_row,
)
from campaigns.export.cursor import Cursor, CursorError, decode_cursor, encode_cursor
from campaigns.export.records import (
    ConsentRecord,
    CustomerRecord,
    DeliveryRecord,
    LastVisit,
    Party,
    ZoneEventRecord,
)
from campaigns.export.segment import delivery_tracks, identify, opt_out_tracks, zone_event_tracks
from campaigns.export.writers import csv_chunks, ndjson_chunks, render
from campaigns.holdout import holdout_bucket, in_holdout

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PHONE = "+33612345678"


def _customer(**kw) -> CustomerRecord:
    base = {
        "id": "c1",
        "crm_id": None,
        "phone_e164": PHONE,
        "first_name": "Léa",
        "locale": "fr",
        "tz": "Europe/Paris",
        "country": "FR",
        "consent": {"sms_marketing": True, "location_offers": True},
        "last_visit": None,
        "created_at": T0,
        "changed_at": T0,
    }
    base.update(kw)
    return CustomerRecord(**base)


def _delivery(status: str, **kw) -> DeliveryRecord:
    base = {
        "id": "d1",
        "party": Party("c1", "crm-9", "Europe/Paris"),
        "campaign_id": "k1",
        "zone_id": "z1",
        "store_id": "s1",
        "visit_id": "v1",
        "channel": "sms",
        "provider": "twilio",
        "status": status,
        "reason": None,
        "attempts": 1,
        "error_code": None,
        "created_at": T0,
        "due_at": T0,
        "sent_at": None,
        "delivered_at": None,
        "changed_at": T0 + timedelta(minutes=1),
    }
    base.update(kw)
    return DeliveryRecord(**base)


def _zone_event(kind: str = "enter", **kw) -> ZoneEventRecord:
    base = {
        "id": "e1",
        "party": Party("c1"),
        "zone_id": "z1",
        "store_id": "s1",
        "kind": kind,
        "at": T0,
        "visit_id": "v1",
        "reason": "inside",
        "lat": 48.84123456,
        "lng": 2.43987654,
        "recorded_at": T0,
    }
    base.update(kw)
    return ZoneEventRecord(**base)


# --- cursor ---------------------------------------------------------------------------------------


def test_cursor_round_trips_and_is_opaque_base64url():
    cursor = Cursor(datetime(2026, 3, 2, 13, 0, tzinfo=timezone(timedelta(hours=1))), "row-7")
    token = encode_cursor("zone_events", cursor)
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    decoded = decode_cursor("zone_events", token)
    assert decoded == Cursor(datetime(2026, 3, 2, 12, 0, tzinfo=UTC), "row-7")
    assert decoded.changed_at.tzinfo == UTC


def test_cursor_of_another_kind_is_refused():
    token = encode_cursor("deliveries", Cursor(T0, "x"))
    with pytest.raises(CursorError, match="deliveries"):
        decode_cursor("customers", token)


@pytest.mark.parametrize("token", ["%%%", "bm90IGpzb24", "e30", "x" * 2000, "W10"])
def test_malformed_cursor_raises_cursor_error(token):
    with pytest.raises(CursorError):
        decode_cursor("customers", token)


@given(st.text(max_size=300))
def test_decode_cursor_never_raises_anything_but_cursor_error(token):
    try:
        decode_cursor("customers", token)
    except CursorError:
        pass


def _token(payload: dict) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


@pytest.mark.parametrize(
    "payload",
    [
        {"v": 1, "k": "customers", "t": "0001-01-01T00:00:00+05:00", "id": "x"},
        {"v": 1, "k": "customers", "t": "2026-01-01T00:00:00", "id": "x"},
        {"v": 1, "k": "customers", "t": "yesterday", "id": "x"},
        {"v": 1, "k": "customers", "t": "2026-01-01T00:00:00Z", "id": 7},
        {"v": 2, "k": "customers", "t": "2026-01-01T00:00:00Z", "id": "x"},
    ],
)
def test_forged_cursors_are_refused_with_a_reason(payload):
    with pytest.raises(CursorError):
        decode_cursor("customers", _token(payload))


def test_empty_cursor_means_full_export():
    assert decode_cursor("customers", None) is None
    assert decode_cursor("customers", "  ") is None


# --- CSV ------------------------------------------------------------------------------------------


def test_hubspot_contact_row_uses_internal_names_and_crm_key():
    assert CUSTOMER_HEADER[:5] == ("crm_id", "geofence_customer_id", "firstname", "phone", "mobilephone")
    visit = LastVisit(at=T0, zone_id="z1", store_id="s1", visits=3)
    row = dict(zip(CUSTOMER_HEADER, customer_row(_customer(crm_id="HS-1", last_visit=visit)), strict=True))
    assert row["crm_id"] == "HS-1"
    assert row["phone"] == row["mobilephone"] == PHONE  # a phone number is not "neutralised"
    assert row["consent_sms_marketing"] == "true"
    assert row["consent_push_marketing"] == "false"
    assert row["last_visit_at"] == "2026-03-02T12:00:00.000Z"
    assert row["store_visits"] == "3"


def test_contact_without_crm_id_is_keyed_by_our_customer_id():
    row = dict(zip(CUSTOMER_HEADER, customer_row(_customer()), strict=True))
    assert row["crm_id"] == "c1"


def test_erased_customer_exports_no_personal_data():
    row = dict(zip(CUSTOMER_HEADER, customer_row(_customer(erased=True)), strict=True))
    assert row["phone"] == row["mobilephone"] == row["firstname"] == ""
    assert row["geofence_erased"] == "true"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("=HYPERLINK(1)", "'=HYPERLINK(1)"), ("@SUM(A1)", "'@SUM(A1)"), ("-2+3", "'-2+3"), ("-12.5", "-12.5"),
     ("+33612345678", "+33612345678"), ("-cmd|x", "'-cmd|x"), (None, ""), (True, "true")],
)  # fmt: skip
def test_cells_neutralise_spreadsheet_formulas_but_keep_numbers(value, expected):
    assert cell(value) == expected


def test_consent_row_carries_the_proof():
    entry = ConsentRecord(
        id="ce1",
        party=Party("c1", "HS-1"),
        purpose="sms_marketing",
        granted=False,
        occurred_at=T0,
        recorded_at=T0 + timedelta(seconds=2),
        source="sms_keyword",
        wording="Répondez STOP",
        wording_version="v3",
        recorded_by="twilio-webhook",
        evidence={"message_sid": "SM123"},
    )
    row = dict(zip(CONSENT_HEADER, consent_row(entry), strict=True))
    assert row["status"] == "opt_out"
    assert row["crm_id"] == "HS-1"
    assert row["wording_version"] == "v3"
    assert row["recorded_by"] == "twilio-webhook"
    assert json.loads(row["evidence"]) == {"message_sid": "SM123"}


def test_zone_event_row_never_carries_more_than_100m_precision():
    row = zone_event_row(_zone_event())
    assert "48.841" in row and "2.440" in row
    assert not any("4812" in v or "98765" in v for v in row)


def test_iso_utc_converts_offsets_and_naive_values():
    assert (
        iso_utc(datetime(2026, 3, 2, 13, 0, tzinfo=timezone(timedelta(hours=1))))
        == "2026-03-02T12:00:00.000Z"
    )
    assert iso_utc(datetime(2026, 3, 2, 12, 0)) == "2026-03-02T12:00:00.000Z"


# --- Segment --------------------------------------------------------------------------------------


def test_identify_carries_traits_and_crm_user_id():
    record = identify(_customer(crm_id="HS-1"))
    assert record["type"] == "identify"
    assert record["userId"] == "HS-1"
    assert record["traits"]["phone"] == PHONE
    assert record["traits"]["consent_sms_marketing"] is True
    assert record["context"] == {"timezone": "Europe/Paris"}


def test_zone_enter_of_a_store_zone_is_also_a_store_visit():
    records = list(zone_event_tracks(_zone_event("enter")))
    assert [r["event"] for r in records] == ["Zone Entered", "Store Visited"]
    assert records[0]["properties"]["lat"] == 48.841
    assert records[0]["timestamp"] == "2026-03-02T12:00:00.000Z"
    assert len({r["messageId"] for r in records}) == 2
    assert [r["event"] for r in zone_event_tracks(_zone_event("dwell"))] == ["Zone Dwelled"]
    assert [r["event"] for r in zone_event_tracks(_zone_event("exit"))] == ["Zone Exited"]


def test_event_without_customer_is_not_exported():
    assert list(zone_event_tracks(_zone_event(party=Party(None)))) == []


def test_message_ids_are_deterministic_across_re_exports():
    sent = _delivery("sent", sent_at=T0)
    delivered = _delivery("delivered", sent_at=T0, delivered_at=T0 + timedelta(seconds=5))
    first = list(delivery_tracks(sent))
    second = list(delivery_tracks(delivered))
    assert [r["event"] for r in second] == ["Offer Sent", "Offer Delivered"]
    assert first[0]["messageId"] == second[0]["messageId"]  # the re-sent "Offer Sent" de-duplicates
    assert second[1]["timestamp"] == "2026-03-02T12:00:05.000Z"


@pytest.mark.parametrize(
    ("status", "reason", "event"),
    [("skipped", "holdout", "Offer Skipped"), ("cancelled", "opt_out:sms", "Offer Skipped"),
     ("failed", "21610", "Offer Failed"), ("pending", None, None), ("deferred", "quiet_hours", None)],
)  # fmt: skip
def test_delivery_statuses_map_to_offer_events(status, reason, event):
    records = list(delivery_tracks(_delivery(status, reason=reason)))
    assert [r["event"] for r in records] == ([event] if event else [])
    if event == "Offer Skipped":
        assert records[0]["properties"]["reason"] == reason


def test_track_events_never_carry_a_phone_number():
    blobs = [
        json.dumps(r)
        for r in [*delivery_tracks(_delivery("delivered", sent_at=T0)), *zone_event_tracks(_zone_event())]
    ]
    assert blobs
    assert not any(PHONE in b or "phone" in b for b in blobs)


def test_unsubscribed_only_for_withdrawals():
    entry = {
        "id": "ce1",
        "party": Party("c1"),
        "purpose": "sms_marketing",
        "occurred_at": T0,
        "recorded_at": T0,
        "source": "sms_keyword",
        "wording": None,
        "wording_version": None,
        "recorded_by": None,
    }
    assert [r["event"] for r in opt_out_tracks(ConsentRecord(granted=False, **entry))] == ["Unsubscribed"]
    assert list(opt_out_tracks(ConsentRecord(granted=True, **entry))) == []


# --- writers --------------------------------------------------------------------------------------


def test_csv_writer_quotes_and_chunks_without_losing_rows():
    rows = [[str(i), f"name, {i}", 'say "hi"\nbye'] for i in range(1234)]
    chunks = list(csv_chunks(("id", "name", "note"), rows, chunk_rows=100))
    assert len(chunks) > 10
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert parsed[0] == ["id", "name", "note"]
    assert parsed[1:] == rows


def test_empty_csv_export_still_has_its_header():
    assert "".join(csv_chunks(("a", "b"), [])) == "a,b\r\n"


def test_ndjson_is_one_object_per_line_with_utf8_kept():
    text = "".join(ndjson_chunks(({"n": i, "name": "Zoé"} for i in range(7)), chunk_rows=3))
    lines = text.splitlines()
    assert len(lines) == 7 and all(json.loads(line)["name"] == "Zoé" for line in lines)
    assert "Zoé" in text


def test_render_refuses_an_unknown_format():
    with pytest.raises(ValueError, match="xml"):
        render("xml", [], header=(), row=list, records=lambda _: [])


# --- holdout ----------------------------------------------------------------------------------------


def test_holdout_is_deterministic_and_close_to_its_share():
    members = [in_holdout("camp-1", f"cust-{i}", 0.2) for i in range(20_000)]
    assert members == [in_holdout("camp-1", f"cust-{i}", 0.2) for i in range(20_000)]
    assert 0.18 < sum(members) / len(members) < 0.22


def test_holdout_differs_between_campaigns_and_respects_bounds():
    a = [in_holdout("camp-1", f"cust-{i}", 0.5) for i in range(2000)]
    b = [in_holdout("camp-2", f"cust-{i}", 0.5) for i in range(2000)]
    assert a != b
    assert not any(in_holdout("c", f"u{i}", 0) for i in range(100))
    assert all(in_holdout("c", f"u{i}", 1) for i in range(100))
    assert in_holdout("c", "u", -1) is False and in_holdout("c", "u", 7) is True


@given(st.text(max_size=40), st.text(max_size=40))
def test_holdout_bucket_is_in_unit_interval(campaign_id, customer_id):
    assert 0.0 <= holdout_bucket(campaign_id, customer_id) < 1.0
