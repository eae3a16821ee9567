"""Travel-time zones through the API and the CLI: isochrones from the configured extract, fallback
circles that say so, ``geofence zones resize`` from a newer extract."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session
from typer.testing import CliRunner

import geofence.service.cli.zones  # noqa: F401  (registers the command group)
from geofence.service.app import create_app
from geofence.service.cli.base import app
from geofence.service.db import create_schema, make_engine
from geofence.service.settings import Settings, get_settings
from geofence.service.tables.zones import ZoneRow
from tests.zones.street_reference import bundled_extract

STORE = {"lat": 60.5248954, "lng": 26.9486699}  # Karhula, west of the motorway
ACROSS_MOTORWAY = (60.5240551, 26.9517979)  # 195 m away, a 15-minute walk
WALK_5 = {**STORE, "mode": "walk", "minutes": 5, "method": "isochrone"}


def _client(settings: Settings, engine, extract: str | None) -> TestClient:
    configured = settings.model_copy(update={"streets": settings.streets.model_copy(
        update={"extract_file": None if extract is None else Path(extract)})})
    return TestClient(create_app(configured, engine=engine))


@pytest.fixture
def karhula_client(settings, engine) -> Iterator[TestClient]:
    with _client(settings, engine, bundled_extract("test_pbf")) as c:
        yield c


def test_isochrone_zone_is_indexed_and_keeps_the_motorway_out(karhula_client: TestClient) -> None:
    r = karhula_client.post("/v1/zones", json={"id": "k", "name": "Karhula", "sizing": WALK_5})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["zone"]["geometry"]["type"] == "area"
    travel = body["travel"]
    assert travel["label"] == "5 min on foot" and travel["method"] == "isochrone"
    assert travel["fallback"] is None and travel["extract"] == "test.osm.pbf"
    assert travel["extract_date"].startswith("2019-01-23") and travel["speeds_kmh"]["residential"] == 5.0
    index = karhula_client.app.state.runtime.geofence.index
    assert index.match(STORE["lat"], STORE["lng"]) == ["k"]
    assert index.match(*ACROSS_MOTORWAY) == []  # inside the 397 m circle, but not 5 minutes away
    assert karhula_client.get("/v1/zones/k").json()["travel"] == travel


def test_auto_mode_is_decided_and_can_be_overridden(karhula_client: TestClient) -> None:
    auto = karhula_client.post("/v1/zones", json={"name": "A", "sizing": {**STORE, "mode": "auto"}}).json()
    assert auto["travel"]["requested_mode"] == "auto" and auto["travel"]["auto_rule"].startswith("auto:")
    forced = karhula_client.post("/v1/zones", json={"name": "B", "sizing": {**STORE, "mode": "drive"}})
    assert forced.json()["travel"]["mode"] == "drive" and forced.json()["travel"]["auto_rule"] is None


def test_without_extract_the_circle_is_drawn_and_the_answer_says_so(settings, engine) -> None:
    with _client(settings, engine, None) as client:
        r = client.post("/v1/zones", json={"name": "S", "sizing": WALK_5})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["zone"]["geometry"] == {"type": "circle", **STORE, "radius_m": pytest.approx(396.8, abs=0.1)}
    assert body["travel"]["method"] == "circle" and body["travel"]["requested_method"] == "isochrone"
    assert "no street extract configured" in body["travel"]["fallback"]


def test_an_unreadable_configured_extract_is_503_with_the_reason(settings, engine, tmp_path) -> None:
    with _client(settings, engine, str(tmp_path / "gone.osm.pbf")) as client:
        r = client.post("/v1/zones", json={"name": "S", "sizing": WALK_5})
        assert r.status_code == 503 and "gone.osm.pbf not found" in r.json()["detail"]
        circle = client.post("/v1/zones", json={"name": "C", "circle": {**STORE, "radius_m": 50}})
        assert circle.status_code == 201  # zones that need no extract are unaffected


@pytest.mark.parametrize("sizing", [
    {**STORE, "mode": "walk", "profile": "walk"},
    {**STORE, "mode": "swim"},
    {**STORE, "method": "hull"},
    {**STORE, "mode": "walk", "minutes": 0},
    {**STORE},
])
def test_bad_travel_sizing_is_422(karhula_client: TestClient, sizing: dict) -> None:
    r = karhula_client.post("/v1/zones", json={"name": "x", "sizing": sizing})
    assert r.status_code == 422, r.text


def test_csv_import_with_mode_column_uses_the_extract(karhula_client: TestClient) -> None:
    text = "id,name,lat,lng,mode,minutes\nk1,K,60.5248954,26.9486699,walk,4\nk2,K,1,1,fly,4\n"
    r = karhula_client.post("/v1/zones/import?format=csv", content=text, headers={"content-type": "text/csv"})
    assert r.status_code == 200 and r.json()["imported"] == 1
    assert r.json()["errors"][0]["line"] == 3
    assert karhula_client.get("/v1/zones/k1").json()["travel"]["method"] == "isochrone"


# ------------------------------------------------------------------------------ CLI
@pytest.fixture
def cli_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("GEOFENCE_DATABASE_URL", url)
    monkeypatch.setenv("GEOFENCE_SCHEDULER__ENABLED", "false")
    monkeypatch.delenv("GEOFENCE_STREETS__EXTRACT_FILE", raising=False)
    get_settings.cache_clear()
    engine = make_engine(url)
    create_schema(engine)
    with Session(engine) as session:
        yield session
    engine.dispose()
    get_settings.cache_clear()


def test_resize_turns_fallback_circles_into_isochrones_and_reports_each(
    cli_db: Session, tmp_path: Path
) -> None:
    csv_file = tmp_path / "stores.csv"
    csv_file.write_text(
        "id,name,lat,lng,mode,minutes,profile,radius_m\n"
        "walk1,W,60.5248954,26.9486699,walk,5,,\n"
        "drive1,D,60.5221018,26.9365858,drive,2,,\n"
        "plain,P,60.5221018,26.9365858,,,,80\n"
    )
    runner = CliRunner()
    imported = runner.invoke(app, ["zones", "import", str(csv_file)])
    assert imported.exit_code == 0, imported.output
    row = cli_db.get(ZoneRow, "walk1")
    assert row is not None and row.data["geometry"]["type"] == "circle"
    assert "no street extract" in row.data["travel"]["fallback"]

    dry = runner.invoke(app, ["zones", "resize", "--extract", bundled_extract("test_pbf"), "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would resize 2 zone(s)" in dry.output
    cli_db.expire_all()
    assert cli_db.get(ZoneRow, "walk1").data["geometry"]["type"] == "circle"  # type: ignore[union-attr]

    result = runner.invoke(app, ["zones", "resize", "--extract", bundled_extract("test_pbf")])
    assert result.exit_code == 0, result.output
    assert "resized 2 zone(s) from test.osm.pbf, 0 failed" in result.output
    lines = {line.split(":")[0].strip(): line for line in result.output.splitlines() if line.startswith("  ")}
    assert "walk, circle -> isochrone" in lines["walk1"] and "% of the old zone kept" in lines["walk1"]
    assert "drive, circle -> isochrone" in lines["drive1"]
    cli_db.expire_all()
    walk = cli_db.get(ZoneRow, "walk1")
    assert walk is not None and walk.data["geometry"]["type"] == "area"
    assert walk.data["travel"]["extract"] == "test.osm.pbf" and walk.data["travel"]["fallback"] is None
    plain = cli_db.get(ZoneRow, "plain")
    assert plain is not None and plain.data["geometry"] == {
        "type": "circle", "lat": 60.5221018, "lng": 26.9365858, "radius_m": 80.0}


def test_the_extract_is_read_once_and_again_when_the_file_is_replaced(tmp_path: Path) -> None:
    import os
    import shutil

    from geofence.service.streets import load_extract

    path = tmp_path / "region.osm.pbf"
    shutil.copyfile(bundled_extract("test_pbf"), path)
    first = load_extract(path)
    assert load_extract(path) is first
    shutil.copyfile(bundled_extract("helsinki_pbf"), path)  # a "newer extract" under the same name
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    second = load_extract(path)
    assert second is not first and second.info.date != first.info.date
