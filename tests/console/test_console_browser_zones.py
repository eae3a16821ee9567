"""The console's zones page driven in Debian's Chromium (headless, Playwright): sign in and out, draw a
circle and a polygon, size a store, import a CSV with a bad line, edit, delete, search, the keyboard, no
basemap. Pages are screenshotted under test-output/console/ (see conftest.screenshots)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import Served, map_ready, serve, sign_in, zones_named


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


def test_a_store_sized_by_the_streets_passes_its_sizing_through(page: Any, served: Served) -> None:
    sign_in(page, served)
    map_ready(page)
    page.click("#mode-store")
    box = page.locator("#map canvas").bounding_box()
    page.mouse.click(box["x"] + 140, box["y"] + 120)
    page.select_option("#zone-sizing", "iso:walk:5")
    page.fill("#zone-name", "Street store")
    page.click("#zone-save")
    page.wait_for_selector("#zone-status:has-text('Street store')")
    (zone,) = zones_named(served, "Street store")  # no street extract here: the API's own fallback
    assert zone["zone"]["minutes"] == 5


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
    page.locator("#import-errors").scroll_into_view_if_needed()
    page.screenshot(path=screenshots / "03-zones-import-errors.png")
    page.fill("#zone-search", "Imported th")
    page.click("#zone-list button:has-text('Imported three')")  # search by name, then edit
    assert page.input_value("#zone-name") == "Imported three"


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
