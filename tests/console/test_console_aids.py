"""What the console computes beside the API: the legal SMS grid, the SMS preview, a trace's zone events,
and the live feed's tail of the tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert
from sqlmodel import Session

from campaigns.legal_hours import DEFAULT_TABLE, load_legal_table
from geofence.policy import FencePolicy
from geofence.service.console.campaign_aids import FORBIDDEN, legal_sms_grid, sms_preview
from geofence.service.console.live_feed import LiveFeed
from geofence.service.console.trace_events import trace_events, zones_of_trigger
from geofence.service.db import create_schema, make_engine
from geofence.service.tables.campaigns import Delivery
from geofence.service.tables.presence import ZoneEventRow
from geofence.traces import read_trace_gpx
from zones.model import Circle, Zone

GPX = Path(__file__).parents[1] / "data" / "senart-2019-07-12.gpx"


def _hours(grid: list[dict], day: str) -> list[str]:
    return next(row["hours"] for row in grid[1:] if row["day"] == day)


def test_the_french_grid_greys_nights_sundays_and_the_half_hour_before_08_30() -> None:
    grid = legal_sms_grid(DEFAULT_TABLE, "FR")
    monday = _hours(grid, "mon")
    assert monday[:8] == [FORBIDDEN] * 8 and monday[8] == "partial"
    assert monday[9:20] == ["allowed"] * 11 and monday[20:] == [FORBIDDEN] * 4
    assert _hours(grid, "sat")[9] == FORBIDDEN and _hours(grid, "sat")[10:18] == ["allowed"] * 8
    assert set(_hours(grid, "sun")) == {FORBIDDEN}
    assert grid[0]["closed_on_public_holidays"] is True


def test_a_night_span_belongs_to_the_day_it_opens_on() -> None:
    table = load_legal_table({"sms": {"XX": {"hours": {"fri": ["22:00-02:00"]}}}})
    grid = legal_sms_grid(table, "XX")
    assert _hours(grid, "fri")[22:] == ["allowed", "allowed"] and _hours(grid, "fri")[0] == FORBIDDEN
    assert _hours(grid, "sat")[:2] == ["allowed", "allowed"] and _hours(grid, "sat")[2] == FORBIDDEN


def test_sms_preview_counts_the_message_as_sent_with_its_mentions() -> None:
    gsm = sms_preview("Pain chaud -10%", locale="fr", advertiser="Boulangerie", sender="36111")
    assert gsm["text"] == "Boulangerie: Pain chaud -10% STOP au 36111"
    assert (gsm["encoding"], gsm["segments"], gsm["mention"]) == ("GSM-7", 1, "STOP au 36111")
    ucs = sms_preview("✨" * 60, locale="fr", advertiser="B", sender="36111")
    assert ucs["encoding"] == "UCS-2" and ucs["segments"] == 2
    refused = sms_preview("x", locale="fr", advertiser="B", sender="BOULANGERIE")
    assert "alphanumeric" in refused["problem"]


def test_a_gpx_trace_enters_and_leaves_a_zone_on_its_path() -> None:
    fixes, _ = read_trace_gpx(GPX.read_text())
    middle = fixes[len(fixes) // 2]
    zone = Zone(id="z", name="Z", geometry=Circle(middle.lat, middle.lng, 150.0), tags=frozenset({"t"}))
    far = Zone(id="far", name="Far", geometry=Circle(45.0, 5.0, 150.0))
    events, problems = trace_events(GPX.read_text(), name="t.gpx", zones=[zone, far], base=FencePolicy())
    assert problems == []
    kinds = [e.kind.value for e in events]
    assert kinds[0] == "enter" and "exit" in kinds
    assert {e.zone_id for e in events} == {"z"}
    assert all(a.at <= b.at for a, b in zip(events, events[1:], strict=False))
    assert zones_of_trigger([zone, far], {"zone_tags": ["t"]}) == [zone]
    assert zones_of_trigger([zone, far], {"zone_ids": ["far"]}) == [far]


def test_the_live_feed_gives_each_new_row_once_and_nothing_personal(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/f.db")
    create_schema(engine)
    start = datetime.now(UTC)
    feed = LiveFeed(engine, start_at=start)
    assert feed.poll() == []
    with Session(engine) as s:
        s.execute(insert(ZoneEventRow).values(
            id="e1", seq=1, zone_id="z1", device_id="d1", customer_id="cust_private", kind="enter", at=start,
            visit_id="v1", reason="fix", lat=48.8, lng=2.3, recorded_at=start + timedelta(milliseconds=5)))
        s.add(Delivery(idempotency_key="k1", campaign_id="camp", customer_id="cust_private",
                       device_id="d1", zone_id="z1", channel="sms", status="skipped",
                       reason="no_consent:sms_marketing",
                       due_at=start, created_at=start + timedelta(milliseconds=6), body="secret offer"))
        s.commit()
    items = feed.poll()
    assert [(i["type"], i.get("kind"), i.get("reason")) for i in items] == [
        ("zone_event", "ENTER", "fix"), ("decision", None, "no_consent:sms_marketing")]
    assert "cust_private" not in repr(items) and "secret offer" not in repr(items)
    assert feed.poll() == []  # nothing twice (the decisions' overlap re-read included)
    with Session(engine) as s:  # events come in log order, whatever their write time says
        s.execute(insert(ZoneEventRow).values(
            id="e0", seq=2, zone_id="z1", device_id="d2", kind="exit", at=start, visit_id="v0", reason="fix",
            recorded_at=start - timedelta(minutes=1)))
        s.commit()
    assert [i["id"] for i in feed.poll()] == ["e0"]
    fresh = LiveFeed(engine, start_at=datetime.now(UTC)).poll()  # a page opened now: from the log's end on
    assert [i for i in fresh if i["type"] == "zone_event"] == []


def test_the_live_feed_shows_a_store_arrival_by_zone_and_time_only(tmp_path: Path) -> None:
    from campaigns.storage.arrivals import StoreArrival

    engine = make_engine(f"sqlite:///{tmp_path}/f.db")
    create_schema(engine)
    start = datetime.now(UTC)
    feed = LiveFeed(engine, start_at=start)
    with Session(engine) as s:
        s.add(StoreArrival(id="arr_1", zone_id="z1", visit_id="v1", customer_id="c1", event_id="e1",
                           alerted_at=start + timedelta(milliseconds=3)))
        s.commit()
    items = feed.poll()
    assert items == [{"type": "arrival", "id": "arr_1", "zone_id": "z1", "zone_name": "z1",
                      "at": (start + timedelta(milliseconds=3)).isoformat()}]
    assert feed.poll() == []


def test_results_come_from_a_snapshot_refreshed_in_the_background() -> None:
    import asyncio

    from freezegun import freeze_time
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from geofence.service.console.results import FRESH_S, STALE_S, ResultSnapshots

    calls: list[str] = []

    async def stats(request):  # a stand-in for GET /v1/campaigns/{id}/stats: counts its calls
        calls.append(request.headers["authorization"])
        return JSONResponse({"sent": len(calls)})

    snapshots = ResultSnapshots(Starlette(routes=[Route("/v1/campaigns/{cid}/stats", stats)]))

    async def scenario(frozen) -> list[int]:
        seen = [(await snapshots.get("c", 24, "k1")).stats["sent"]]
        seen.append((await snapshots.get("c", 24, "k1")).stats["sent"])  # fresh: no new call
        frozen.tick(FRESH_S + 1)
        seen.append((await snapshots.get("c", 24, "k2")).stats["sent"])  # stale: old one, refresh starts
        await asyncio.sleep(0.05)
        seen.append((await snapshots.get("c", 24, "k2")).stats["sent"])  # the refreshed one
        frozen.tick(STALE_S + 1)
        seen.append((await snapshots.get("c", 24, "k3")).stats["sent"])  # too old to show: waits
        return seen

    with freeze_time("2026-12-07 10:00:00", real_asyncio=True) as frozen:
        assert asyncio.run(scenario(frozen)) == [1, 1, 1, 2, 3]
    assert calls == ["Bearer k1", "Bearer k2", "Bearer k3"]


def test_people_are_found_by_id_number_or_masked_number_and_shown_masked(tmp_path: Path) -> None:
    from geofence.service.console.people import search_people
    from geofence.service.tables.customers import ConsentEvent, Customer

    engine = make_engine(f"sqlite:///{tmp_path}/p.db")
    create_schema(engine)
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with Session(engine) as s:
        for cid, phone in (("ana", "+33612345678"), ("bob", "+33698765478"), ("eve", "+3361234578")):
            s.add(Customer(id=cid, phone_e164=phone, created_at=at))
            s.add(ConsentEvent(customer_id=cid, purpose="sms_marketing", granted=False, occurred_at=at,
                               recorded_at=at, source="sms_keyword"))
        s.commit()
    masked = search_people(engine, "+33*******78")  # ana and bob share it; eve's number is shorter
    assert masked.customer_ids == ["ana", "bob"]
    assert {o["phone"] for o in masked.opt_outs} == {"+33*******78"}
    assert search_people(engine, "06 12 34 56 78").customer_ids == ["ana"]  # a number as typed
    assert search_people(engine, "eve").masked == {"eve": "+33******78"}
    assert search_people(engine, "+33%_*78").customer_ids == []  # LIKE characters match literally
    everyone = search_people(engine, "")
    assert len(everyone.opt_outs) == 3 and "+33612345678" not in repr(everyone)
