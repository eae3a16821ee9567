"""The console driven in Debian's Chromium (headless, Playwright): sign in, draw and import zones, a
campaign whose SMS window crosses a forbidden hour, a dry run on a GPX trace, a live ENTER, a STOP in
the opt-outs. Each page is screenshotted under test-output/console/ (see conftest.screenshots)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import Session
from twilio.request_validator import RequestValidator

from campaigns.phones import phone_hash
from tests.console.conftest import HASH_KEY, TWILIO_TOKEN, Served, axe_violations, sign_in
from tests.service.campaign_factories import add_customer

GPX = Path(__file__).parents[1] / "data" / "senart-2019-07-12.gpx"
PHONE = "+33612345678"


def zones_named(served: Served, name: str) -> list[dict[str, Any]]:
    with served.api() as api:
        items = api.get("/v1/zones", params={"limit": 500}).json()["items"]
    return [z for z in items if z["name"] == name]


def map_ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready=zones]")


def test_nothing_is_reachable_before_signing_in_and_a_wrong_key_is_refused(page: Any, served: Served,
                                                                           screenshots: Path) -> None:
    page.goto(served.url + "/console/campaigns")
    assert "/console/login" in page.url
    page.fill("#api_key", "gk_not_a_key")
    page.click("#sign-in")
    page.wait_for_selector("#login-error")
    page.screenshot(path=screenshots / "01-login-refused.png")
    page.fill("#api_key", served.admin_key)
    page.click("#sign-in")
    page.wait_for_url("**/console/campaigns")  # back where the marketer was going
    page.click("#sign-out")
    page.wait_for_url("**/console/login")
    page.goto(served.url + "/console/zones")
    assert "/console/login" in page.url


def test_a_circle_drawn_on_the_map_is_a_zone_of_the_api(page: Any, served: Served, screenshots: Path) -> None:
    sign_in(page, served)
    map_ready(page)
    page.click("#mode-circle")
    box = page.locator("#map canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(cx, cy)  # the centre
    page.mouse.click(cx + 60, cy)  # a point of the edge
    radius = float(page.input_value("#zone-radius"))
    assert radius > 10
    page.fill("#zone-name", "Drawn circle")
    page.fill("#zone-tags", "bakery")
    page.click("#zone-save")
    page.wait_for_selector("#zone-status:has-text('Drawn circle')")
    (zone,) = zones_named(served, "Drawn circle")
    geometry = zone["zone"]["geometry"]
    assert geometry["type"] == "circle"
    assert geometry["radius_m"] == pytest.approx(radius, abs=1)
    assert geometry["lat"] == pytest.approx(float(page.input_value("#zone-lat")), abs=1e-5)
    assert zone["zone"]["tags"] == ["bakery"]
    page.wait_for_selector(".zone-label:has-text('Drawn circle')")  # its label on the map
    page.screenshot(path=screenshots / "02-zones-drawn-circle.png")


def test_a_store_sized_5_min_on_foot_gives_its_zone(page: Any, served: Served) -> None:
    sign_in(page, served)
    map_ready(page)
    page.click("#mode-store")
    box = page.locator("#map canvas").bounding_box()
    page.mouse.click(box["x"] + 100, box["y"] + 100)
    page.select_option("#zone-sizing", "walk:5")
    page.fill("#zone-name", "Walk store")
    page.click("#zone-save")
    page.wait_for_selector("#zone-status:has-text('Walk store')")
    (zone,) = zones_named(served, "Walk store")
    assert zone["zone"]["profile"] == "walk"
    shown = page.text_content("#zone-status")
    assert f"{round(zone['zone']['geometry']['radius_m'])} m" in shown  # the size the sizing gave


def test_an_imported_csv_shows_its_bad_line_and_keeps_the_good_ones(
    page: Any, served: Served, screenshots: Path, tmp_path: Path
) -> None:
    csv = tmp_path / "stores.csv"
    csv.write_text(
        "id,name,lat,lng,radius_m,tags\n"
        "imp-1,Imported one,48.86,2.34,120,pharmacy\n"
        "imp-2,Imported bad,not-a-number,2.35,120,pharmacy\n"
        "imp-3,Imported three,48.87,2.36,150,bakery\n"
    )
    sign_in(page, served)
    map_ready(page)
    page.set_input_files("#import-file", str(csv))
    page.click("#import-run")
    row = page.wait_for_selector("#import-errors tbody tr")
    assert row.text_content().startswith("3")  # the CSV line number of the bad row
    assert "lat" in row.text_content().lower()
    assert page.text_content("#import-count").startswith("2")
    assert zones_named(served, "Imported one") and zones_named(served, "Imported three")
    assert not zones_named(served, "Imported bad")
    page.fill("#zone-search", "Imported th")
    page.click("#zone-list button:has-text('Imported three')")  # search by name, then edit
    assert page.input_value("#zone-name") == "Imported three"
    page.screenshot(path=screenshots / "03-zones-import-errors.png")


def test_an_sms_window_over_a_forbidden_hour_is_greyed_and_named(page: Any, served: Served,
                                                                 screenshots: Path) -> None:
    sign_in(page, served, "/console/campaigns/new")
    page.wait_for_selector("body[data-ready=campaign]")
    page.fill("#c-id", "evening-sms")
    page.fill("#c-name", "Evening SMS")
    page.select_option("#c-channel", "sms")
    page.fill("#c-tags", "bakery")
    page.check(".c-kind[value=enter]")
    page.fill("#c-advertiser", "Boulangerie")
    page.fill("#c-sender", "36111")
    page.fill("#c-body-fr", "Pain chaud : -10 % ce soir")
    page.check("input.slot[data-day=mon][data-hour='19']")
    page.check("input.slot[data-day=mon][data-hour='20']")
    late = page.locator("td.h[data-day=mon][data-hour='20']")
    assert "forbidden" in late.get_attribute("class") and "chosen" in late.get_attribute("class")
    assert "forbidden" not in page.locator("td.h[data-day=mon][data-hour='19']").get_attribute("class")
    page.wait_for_selector("#window-warning:has-text('mon 20h')")
    page.wait_for_selector("#c-sms-fr:has-text('GSM-7')")
    assert "STOP au 36111" in page.text_content("#c-sms-fr")
    page.fill("#c-body-fr", "Pain chaud ✨ ce soir")  # an emoji: UCS-2
    page.wait_for_selector("#c-sms-fr:has-text('UCS-2')")
    page.screenshot(path=screenshots / "04-campaign-forbidden-hour.png", full_page=True)
    page.click("#campaign-save")
    page.wait_for_selector("#campaign-saved")
    with served.api() as api:
        definition = api.get("/v1/campaigns/evening-sms").json()["definition"]
    assert definition["channel"] == "sms"
    assert definition["windows"] == [{"days": ["mon"], "start": "19:00", "end": "21:00"}]


def test_a_dry_run_on_a_gpx_trace_shows_each_decision_and_its_reason(page: Any, served: Served,
                                                                     screenshots: Path) -> None:
    points = re.findall(r'<trkpt lat="([\d.]+)" lon="([\d.]+)"', GPX.read_text())
    lat, lng = (float(v) for v in points[len(points) // 2])
    with served.api() as api:
        created = api.post("/v1/zones", json={"id": "senart", "name": "Sénart store", "tags": ["forest"],
                                              "circle": {"lat": lat, "lng": lng, "radius_m": 150}})
        assert created.status_code == 201, created.text
        campaign = api.post("/v1/campaigns", json={
            "id": "forest-push", "name": "Forest push", "status": "active", "channel": "push",
            "trigger": {"zone_ids": ["senart"], "kinds": ["enter", "exit"]},
            "templates": {"fr": {"title": "Bienvenue", "body": "Un café offert"}},
        })
        assert campaign.status_code == 201, campaign.text
    sign_in(page, served, "/console/campaigns/forest-push")
    page.wait_for_selector("body[data-ready=campaign]")
    page.set_input_files("#trace-file", str(GPX))
    page.fill("#trace-device", "nobody's-phone")
    page.click("#dry-run-trace-run")
    page.wait_for_selector("#dry-run-rows tbody tr")
    rows = page.locator("#dry-run-rows tbody tr")
    assert rows.count() >= 2  # an enter and an exit of the store's zone
    for i in range(rows.count()):
        assert rows.nth(i).locator("td.outcome").text_content() in ("send", "defer", "skip")
        assert rows.nth(i).locator("td.reason").text_content().strip()
    assert "senart" in rows.nth(0).text_content() and "nobody's-phone" in rows.nth(0).text_content()
    assert "unknown_customer" in page.text_content("#dry-run-summary")  # no customer has that device
    page.screenshot(path=screenshots / "05-campaign-dry-run-gpx.png", full_page=True)
    page.click("#dry-run-recorded")  # over the recorded events instead: none for this zone
    page.wait_for_selector("#dry-run-summary:not(:has-text('GPX'))")
    assert page.locator("#dry-run-rows tbody tr").count() == 0


@pytest.fixture(scope="module")
def customer_in_zone(served: Served) -> None:
    """A customer with every consent, their device and a zone around Paris's Hôtel de Ville."""
    engine = served.app.state.runtime.engine
    with Session(engine) as session:
        customer = add_customer(
            session, datetime.now(UTC), cid="live-cust", device_id="live-dev", phone=PHONE
        )
        customer.phone_hash = phone_hash(PHONE, HASH_KEY)  # how an inbound SMS finds its customer
        session.add(customer)
        session.commit()
    with served.api() as api:
        response = api.post("/v1/zones", json={"id": "live-zone", "name": "Live store", "tags": ["live"],
                                               "circle": {"lat": 48.8566, "lng": 2.3522, "radius_m": 200}})
        assert response.status_code == 201, response.text
        response = api.post("/v1/campaigns", json={
            "id": "live-offer", "name": "Live offer", "status": "active", "channel": "push",
            "trigger": {"zone_tags": ["live"], "kinds": ["enter"]}, "holdout_share": 0.0,
            "templates": {"fr": {"title": "Bonjour", "body": "Un café offert"}},
        })
        assert response.status_code == 201, response.text


def enter_live_store(served: Served) -> None:
    fix = {"device_id": "live-dev", "lat": 48.8566, "lng": 2.3522, "accuracy_m": 10,
           "recorded_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
    with served.api() as api:
        response = api.post("/v1/locations", json={"fixes": [fix]}, headers=served.ingest)
        assert response.status_code in (200, 202), response.text


def test_a_live_enter_arrives_after_a_fix_is_posted(page: Any, served: Served, screenshots: Path,
                                                   customer_in_zone: None) -> None:
    sign_in(page, served, "/console/live")
    page.wait_for_selector("body[data-ready=live]")
    enter_live_store(served)
    item = page.wait_for_selector("#live-events li.ENTER:has-text('Live store')", timeout=20_000)
    assert "live-dev" in item.text_content()
    decision = page.wait_for_selector("#live-decisions li:has-text('live-offer')", timeout=20_000)
    with served.api() as api:
        (row,) = api.get("/v1/deliveries", params={"campaign_id": "live-offer"}).json()["items"]
    assert row["status"] in decision.text_content()  # the decision as the outbox recorded it
    page.click("#live-pause")
    assert page.get_attribute("#live-pause", "aria-pressed") == "true"
    html = page.content()
    assert PHONE not in html and "tok-live-dev" not in html  # nothing personal reaches the page
    page.screenshot(path=screenshots / "06-live-enter.png")


def test_results_chart_the_campaign_s_outcomes(page: Any, served: Served, screenshots: Path,
                                                customer_in_zone: None) -> None:
    with served.api() as api:
        if not api.get("/v1/deliveries", params={"campaign_id": "live-offer"}).json()["items"]:
            enter_live_store(served)  # when this test runs alone
        stats = api.get("/v1/campaigns/live-offer/stats").json()
    assert stats["sent"] + stats["waiting"] + sum(stats["skipped"].values()) == 1
    sign_in(page, served, "/console/results?campaign=live-offer")
    chart = page.locator("#results-chart")
    title = chart.locator("title").text_content()
    assert f"sent {stats['sent']}" in title and f"skipped {sum(stats['skipped'].values())}" in title
    assert chart.locator("rect").count() == 4
    page.screenshot(path=screenshots / "08-results-chart.png", full_page=True)


def test_a_stop_reply_appears_in_the_opt_outs_with_a_masked_number(
    page: Any, served: Served, screenshots: Path, customer_in_zone: None
) -> None:
    params = {"MessageSid": "SM" + "5" * 32, "SmsSid": "SM" + "5" * 32, "AccountSid": "AC" + "1" * 32,
              "From": PHONE, "To": "+33757000000", "Body": "STOP", "NumSegments": "1"}
    url = served.url + "/v1/twilio/sms/inbound"
    signature = RequestValidator(TWILIO_TOKEN).compute_signature(url, params)
    with served.api() as api:
        response = api.post("/v1/twilio/sms/inbound", content=urlencode(params), headers={
            "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
        assert response.status_code == 200, response.text
    sign_in(page, served, "/console/people")
    page.fill("#p-q", "+33*******78")
    page.click("#p-search")
    row = page.wait_for_selector("#optouts tbody tr:has-text('live-cust')")
    assert "+33*******78" in row.text_content() and "sms_keyword" in row.text_content()
    page.click("#optouts tbody tr a:has-text('live-cust')")
    page.wait_for_selector("#consent-history tbody tr:has-text('sms_keyword')")
    assert PHONE not in page.content()
    page.screenshot(path=screenshots / "07-people-stop-opt-out.png", full_page=True)


PAGES = ["/console/zones", "/console/campaigns", "/console/campaigns/evening-sms", "/console/live",
         "/console/results?campaign=forest-push", "/console/people?q=live-cust&customer=live-cust"]


@pytest.mark.parametrize(("width", "height", "label"), [(1280, 860, "desktop"), (820, 1180, "tablet")])
def test_every_page_has_no_serious_accessibility_violation(browser: Any, served: Served, screenshots: Path,
                                                            width: int, height: int, label: str) -> None:
    context = browser.new_context(viewport={"width": width, "height": height}, locale="fr-FR")
    page = context.new_page()
    try:
        sign_in(page, served, "/console/results")
        assert page.get_attribute("html", "lang") == "fr"  # Accept-Language
        for path in PAGES:
            page.goto(served.url + path)
            page.wait_for_load_state("networkidle") if "live" not in path else page.wait_for_timeout(800)
            name = path.split("?")[0].strip("/").replace("/", "-")
            page.screenshot(path=screenshots / f"10-{label}-{name}.png", full_page=True)
            found = [(v["id"], [n["html"][:120] for n in v["nodes"][:3]]) for v in axe_violations(page)]
            assert found == [], path
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 1, f"{path} scrolls sideways at {width} px"
    finally:
        context.close()


FULL_DEFINITION = {
    "id": "round-trip", "name": "Round trip", "status": "draft", "priority": 3, "channel": "push_then_sms",
    "trigger": {"zone_ids": ["senart"], "zone_tags": ["bakery", "forest"], "kinds": ["dwell", "enter"]},
    "audience": {"all": [{"attribute": "loyalty_tier", "op": "in", "value": ["gold", "silver"]},
                         {"attribute": "visits", "op": "gte", "value": 3}]},
    "templates": {"fr": {"title": "Bonjour {first_name}", "body": "-10 % chez {store_name}"},
                  "en": {"body": "10% off at {store_name}"}},
    "default_locale": "fr", "advertiser": "Boulangerie", "sender": "36111",
    "windows": [{"days": ["mon"], "start": "09:00", "end": "12:00"}, {"days": ["sat"], "start": "14:00",
                                                                      "end": "16:00"}],
    "out_of_window": {"mode": "defer", "max_delay_s": 3600},
    "caps": {"cooldown_s": 7200, "zone_cooldown_s": 3600, "one_per_visit": False},
    "offer_ttl_s": 5400, "push_quiet_hours": {"start": "22:00", "end": "07:00"},
    "starts_at": "2026-12-01T08:00:00Z", "ends_at": "2027-01-31T18:00:00Z", "near_exit_s": 600,
    "near_m": 300.0, "holdout_share": 0.1,
}


def test_the_campaign_form_saves_back_exactly_what_it_loaded(page: Any, served: Served) -> None:
    with served.api() as api:
        created = api.post("/v1/campaigns", json=FULL_DEFINITION)
        assert created.status_code == 201, created.text
        before = created.json()["definition"]
    sign_in(page, served, "/console/campaigns/round-trip")
    page.wait_for_selector("body[data-ready=campaign]")
    assert page.input_value("#c-holdout") == "0.1"
    assert page.is_checked("input.slot[data-day=sat][data-hour='15']")
    page.click("#campaign-save")
    page.wait_for_selector("#campaign-saved")
    with served.api() as api:
        after = api.get("/v1/campaigns/round-trip").json()
    assert after["definition"] == before and after["version"] == 2
    page.select_option("#c-status", "active")  # the status goes through POST .../status
    page.click("#campaign-save")
    page.wait_for_selector("#campaign-saved")
    with served.api() as api:
        assert api.get("/v1/campaigns/round-trip").json()["status"] == "active"


def test_a_polygon_drawn_on_the_map_then_edited_and_deleted(page: Any, served: Served) -> None:
    sign_in(page, served)
    map_ready(page)
    page.click("#mode-polygon")
    box = page.locator("#map canvas").bounding_box()
    x, y = box["x"] + 200, box["y"] + 200
    for dx, dy in ((0, 0), (80, 0), (80, 60), (0, 60), (0, 0)):  # the last click closes it
        page.mouse.click(x + dx, y + dy)
    assert '"Polygon"' in page.input_value("#zone-area")
    page.fill("#zone-name", "Drawn polygon")
    page.click("#zone-save")
    page.wait_for_selector("#zone-status:has-text('Drawn polygon')")
    (zone,) = zones_named(served, "Drawn polygon")
    ring = zone["zone"]["geometry"]["geojson"]["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    page.fill("#zone-name", "Renamed polygon")  # the saved zone stays in the form: edit it
    page.click("#zone-save")
    page.wait_for_selector("#zone-status:has-text('Renamed polygon')")
    assert zones_named(served, "Renamed polygon") and not zones_named(served, "Drawn polygon")
    page.click("#zone-delete")
    page.wait_for_selector("#zone-status:has-text('✕')")
    assert not zones_named(served, "Renamed polygon")


def test_signing_in_and_saving_a_zone_work_from_the_keyboard(page: Any, served: Served) -> None:
    page.goto(served.url + "/console/zones")
    page.keyboard.press("Tab")  # the skip link comes first
    assert page.evaluate("document.activeElement.className") == "skip"
    page.focus("#api_key")
    page.keyboard.type(served.admin_key)
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/zones")
    map_ready(page)
    for field, value in (("#zone-name", "Typed circle"), ("#zone-lat", "48.80"), ("#zone-lng", "2.30"),
                         ("#zone-radius", "150")):
        page.focus(field)
        page.keyboard.type(value)
    page.focus("#zone-save")
    page.keyboard.press("Enter")
    page.wait_for_selector("#zone-status:has-text('Typed circle')")
    (zone,) = zones_named(served, "Typed circle")
    assert zone["zone"]["geometry"] == {"type": "circle", "lat": 48.8, "lng": 2.3, "radius_m": 150.0}


@pytest.mark.parametrize("basemap", ["http://127.0.0.1:9/tiles/{z}/{x}/{y}.png", "http://127.0.0.1:9/style.json"])
def test_zones_show_and_edit_when_the_basemap_is_unreachable(
    browser: Any, tmp_path: Path, basemap: str, screenshots: Path
) -> None:
    from tests.console.conftest import serve

    servers = serve(tmp_path, console={"basemap_style_url": basemap})
    other = next(servers)
    try:
        with other.api() as api:
            api.post("/v1/zones", json={"id": "b1", "name": "Basemap-less", "tags": ["x"],
                                        "circle": {"lat": 48.85, "lng": 2.35, "radius_m": 300}})
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        page = context.new_page()
        sign_in(page, other)
        map_ready(page)
        assert "OpenStreetMap" in page.text_content(".maplibregl-ctrl-attrib")
        page.wait_for_selector(".zone-label:has-text('Basemap-less')")
        page.click("#zone-list button:has-text('Basemap-less')")
        page.fill("#zone-radius", "450")
        page.click("#zone-save")
        page.wait_for_selector("#zone-status:has-text('450 m')")
        if basemap.endswith(".json"):  # a style that does not answer: the plain background, said so
            assert page.is_visible("#map-note")
            page.screenshot(path=screenshots / "09-zones-no-basemap.png")
        context.close()
    finally:
        servers.close()
