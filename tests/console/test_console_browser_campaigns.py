"""The console's campaign, live, results and people pages driven in Debian's Chromium (headless,
Playwright): a campaign whose SMS window crosses a forbidden hour, the form's round trip, a dry run on a
GPX trace, a live ENTER after a fix, the results chart, a STOP in the opt-outs, and axe-core on every
page at 1280 px and on a tablet. Pages are screenshotted under test-output/console/."""

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
from geofence.service.wiring.campaigns import campaign_consumer_loop, dispatch_job
from tests.console.conftest import HASH_KEY, TWILIO_TOKEN, Served, axe_violations, sign_in
from tests.service.campaign_factories import add_customer

GPX = Path(__file__).parents[1] / "data" / "senart-2019-07-12.gpx"
PHONE = "+33612345678"


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


def midday_tz(now: datetime) -> str:
    """A time zone where it is about 13:00 at ``now``: the offer is sent whatever the hour of the run."""
    offset = (13 - now.hour + 12) % 24 - 12  # UTC-12 .. UTC+11
    return f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-2 is UTC+2


@pytest.fixture(scope="module")
def customer_in_zone(served: Served) -> None:
    """A customer with every consent, their device and a zone around Paris's Hôtel de Ville."""
    engine = served.app.state.runtime.engine
    with Session(engine) as session:
        customer = add_customer(
            session, datetime.now(UTC), cid="live-cust", device_id="live-dev", phone=PHONE
        )
        customer.phone_hash = phone_hash(PHONE, HASH_KEY)  # how an inbound SMS finds its customer
        customer.tz = midday_tz(datetime.now(UTC))  # push quiet hours (21:00-08:00 local) never in the way
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
    # the test app runs no worker loops: decide the committed ENTER as the campaigns consumer would
    consumer = campaign_consumer_loop(served.app.state.runtime)
    while consumer.work():
        pass


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
        dispatch_job(served.app.state.runtime)  # the outbox channel sends the waiting offer
        stats = api.get("/v1/campaigns/live-offer/stats").json()
    assert stats["sent"] == 1
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
    held: list[Any] = []  # the status change, kept waiting: the first save's "saved" must be gone meanwhile
    page.route("**/campaigns/round-trip/status", lambda route: held.append(route))
    page.select_option("#c-status", "active")  # the status goes through POST .../status
    page.click("#campaign-save")
    while not held:
        page.wait_for_timeout(10)
    assert page.query_selector("#campaign-saved") is None
    held[0].continue_()
    page.wait_for_selector("#campaign-saved")
    with served.api() as api:
        assert api.get("/v1/campaigns/round-trip").json()["status"] == "active"
