"""The console over HTTP without a browser: sign-in and its cookie, CSRF, what the forwarded API may
reach, masking, languages."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from geofence.service.app import create_app
from geofence.service.console.api_proxy import allowed, personal, scrub
from geofence.service.console.session import COOKIE, ConsoleSession, SessionCodec
from geofence.service.settings import Settings
from tests.conftest import make_key_headers


def _app(tmp_path: Path, **overrides: object) -> tuple[TestClient, str, str]:
    settings = Settings(
        env="test", database_url=f"sqlite:///{tmp_path}/c.db", outbox_dir=tmp_path / "o",
        export_dir=tmp_path / "e", scheduler={"enabled": False}, auth_required=True, hash_key="k" * 32,
        **{"public_base_url": "http://127.0.0.1:8000", **overrides},
    )
    app = create_app(settings, run_jobs=False)
    engine = app.state.runtime.engine
    admin = make_key_headers(engine, "admin")["Authorization"].split()[1]
    ingest = make_key_headers(engine, "ingest")["Authorization"].split()[1]
    base = "https://127.0.0.1" if settings.public_base_url.startswith("https") else "http://127.0.0.1"
    return TestClient(app, base_url=base), admin, ingest


def _login_token(client: TestClient, path: str = "/console/login") -> str:
    page = client.get(path)
    return re.search(r'name="login_csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]


def _post_login(client: TestClient, key: str, token: str, next: str = "/console/zones") -> Any:
    form = {"api_key": key, "login_csrf": token, "next": next}
    return client.post("/console/login", data=form, follow_redirects=False)


def _sign_in(client: TestClient, key: str) -> str:
    """Sign in; returns the page's CSRF token."""
    assert _post_login(client, key, _login_token(client)).status_code == 303
    return re.search(r'name="csrf-token" content="([^"]+)"', client.get("/console/zones").text).group(1)  # type: ignore[union-attr]


@pytest.fixture
def console(tmp_path: Path) -> tuple[TestClient, str, str]:
    return _app(tmp_path)


def test_every_page_and_call_needs_a_session(console: tuple[TestClient, str, str]) -> None:
    client, _admin, _ingest = console
    for section in ("zones", "campaigns", "live", "results", "people"):
        path = f"/console/{section}"
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"].startswith("/console/login")
    assert client.get("/console/api/v1/zones").status_code == 401
    assert client.get("/console/live/stream").status_code == 401
    assert client.post("/console/sms-preview", json={"body": "x"}).status_code == 401


def test_the_session_cookie_is_httponly_samesite_and_carries_no_key_in_clear(tmp_path: Path) -> None:
    client, admin, _ = _app(tmp_path, public_base_url="https://console.example.test")
    response = _post_login(client, admin, _login_token(client))
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags
    assert "secure" in flags and "path=/console" in flags
    assert admin not in cookie and admin.split("_")[1] not in cookie
    page = client.get("/console/zones")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"


def test_no_secure_flag_on_plain_http(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    response = _post_login(client, admin, _login_token(client))
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    assert "secure" not in cookie.lower()


def test_an_ingest_key_or_a_forged_login_form_does_not_sign_in(console: tuple[TestClient, str, str]) -> None:
    client, admin, ingest = console
    refused = _post_login(client, ingest, _login_token(client))
    assert "error=bad_key" in refused.headers["location"]
    forged = _post_login(client, admin, "guess")
    assert "error=csrf" in forged.headers["location"]
    assert client.get("/console/zones", follow_redirects=False).status_code == 303


def test_state_changes_need_the_csrf_token(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    csrf = _sign_in(client, admin)
    zone = {"name": "Z", "circle": {"lat": 48.85, "lng": 2.35, "radius_m": 100}}
    assert client.post("/console/api/v1/zones", json=zone).status_code == 403
    wrong = client.post("/console/api/v1/zones", json=zone, headers={"X-CSRF-Token": "nope"})
    assert wrong.status_code == 403
    created = client.post("/console/api/v1/zones", json=zone, headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201
    zone_id = created.json()["id"]
    assert client.delete(f"/console/api/v1/zones/{zone_id}").status_code == 403
    assert client.post("/console/logout", data={"csrf_token": "nope"}).status_code == 403
    out = client.post("/console/logout", data={"csrf_token": csrf}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/console/api/v1/zones").status_code == 401


def test_the_api_s_own_validation_answers_through_the_console(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    csrf = _sign_in(client, admin)
    bad = client.post("/console/api/v1/zones", json={"name": "Z"}, headers={"X-CSRF-Token": csrf})
    assert bad.status_code == 422 and "exactly one of circle, area or sizing" in bad.text


def test_customer_records_are_not_reachable_through_the_console(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    _sign_in(client, admin)
    assert client.get("/console/api/v1/customers").status_code == 404
    assert client.get("/console/api/v1/customers/c1").status_code == 404
    assert client.get("/console/api/v1/exports/customers").status_code == 404
    assert allowed("GET", "customers/c1/consents") and not allowed("DELETE", "customers/c1")


def test_a_revoked_key_ends_the_console_session(console: tuple[TestClient, str, str]) -> None:
    from geofence.service import apikeys, clock
    from geofence.service.db import session_scope

    client, admin, _ = console
    _sign_in(client, admin)
    assert client.get("/console/api/v1/zones").status_code == 200
    with session_scope(client.app.state.runtime.engine) as s:  # type: ignore[attr-defined]
        apikeys.revoke_api_key(s, admin.split("_")[1], at=clock.now())
    assert client.get("/console/api/v1/zones").status_code == 401
    assert client.get("/console/zones", follow_redirects=False).status_code == 303
    assert client.get("/console/live/stream").status_code == 401


def test_phone_numbers_and_push_tokens_are_masked_at_any_depth() -> None:
    answer = {"items": [{"phone_e164": "+33612345678", "evidence": {"to": "+33757000000"},
                         "push_token": "fcm-token-abcdef123456", "body": "Call +33612345678 now"}]}
    masked = scrub(answer)
    text = repr(masked)
    assert "+33612345678" not in text and "+33757000000" not in text and "abcdef123456" not in text
    assert masked["items"][0]["phone_e164"] == "+33*******78"


def test_sessions_expire_and_forged_cookies_open_nothing() -> None:
    codec = SessionCodec("secret", max_age_s=600)
    sealed = codec.seal(ConsoleSession("gfk_x", "x", "n", int(time.time()) - 601))
    assert codec.open(sealed) is None
    fresh = codec.seal(ConsoleSession("gfk_x", "x", "n", int(time.time())))
    assert codec.open(fresh) is not None
    assert SessionCodec("other", max_age_s=600).open(fresh) is None
    assert codec.open(fresh[:-4] + "AAAA") is None


def test_language_follows_the_switch_then_accept_language(console: tuple[TestClient, str, str]) -> None:
    client, _admin, _ = console
    assert 'lang="fr"' in client.get("/console/login", headers={"Accept-Language": "fr-FR,fr;q=0.9"}).text
    assert 'lang="en"' in client.get("/console/login", headers={"Accept-Language": "de, en;q=0.5"}).text
    client.cookies.set("geofence_console_lang", "fr", path="/console")
    page = client.get("/console/login", headers={"Accept-Language": "en"})
    assert 'lang="fr"' in page.text and "Se connecter" in page.text


def test_the_next_page_after_sign_in_stays_inside_the_console(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    token = _login_token(client, "/console/login?next=https://evil.example/x")
    response = _post_login(client, admin, token, next="//evil.example/x")
    assert response.headers["location"] == "/console/zones"


def test_the_zone_map_follows_every_change_of_the_zones(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    csrf = _sign_in(client, admin)
    headers = {"X-CSRF-Token": csrf}
    assert client.get("/console/zones.geojson").json()["features"] == []
    zone = {"id": "z1", "name": "One", "tags": ["a"], "circle": {"lat": 48.85, "lng": 2.35, "radius_m": 100}}
    assert client.post("/console/api/v1/zones", json=zone, headers=headers).status_code == 201
    (feature,) = client.get("/console/zones.geojson").json()["features"]
    assert feature["properties"]["radius_m"] == 100 and feature["geometry"]["type"] == "Point"
    replaced = {**zone, "circle": {"lat": 48.85, "lng": 2.35, "radius_m": 250}}
    assert client.put("/console/api/v1/zones/z1", json=replaced, headers=headers).status_code == 200
    assert client.get("/console/zones.geojson").json()["features"][0]["properties"]["radius_m"] == 250
    assert client.delete("/console/api/v1/zones/z1", headers=headers).status_code == 204
    assert client.get("/console/zones.geojson").json()["features"] == []
    with client as c:  # the same document as the API's export
        c.post("/console/api/v1/zones", json=zone, headers=headers)
        assert c.get("/console/zones.geojson").json() == c.get("/console/api/v1/zones/export").json()


def test_the_package_data_ships_every_console_file() -> None:
    import tomllib

    root = Path(__file__).parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    package = root / "geofence"
    shipped = {p for pattern in setuptools["package-data"]["geofence"] for p in package.glob(pattern)}
    console = package / "service" / "console"
    files = {p for p in console.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert console / "static" / "vendor" / "maplibre-gl" / "maplibre-gl.js" in files
    assert sorted(files - shipped) == []


def test_a_store_number_in_a_zone_or_an_offer_survives_an_edit(console: tuple[TestClient, str, str]) -> None:
    client, admin, _ = console
    headers = {"X-CSRF-Token": _sign_in(client, admin)}
    zone = {"id": "z1", "name": "Shop", "metadata": {"phone": "+33145678901"},
            "circle": {"lat": 48.85, "lng": 2.35, "radius_m": 100}}
    assert client.post("/console/api/v1/zones", json=zone, headers=headers).status_code == 201
    assert client.get("/console/api/v1/zones/z1").json()["zone"]["metadata"] == {"phone": "+33145678901"}
    assert "+33145678901" in client.get("/console/zones.geojson").text
    campaign = {"id": "c1", "name": "C", "trigger": {"zone_ids": ["z1"]},
                "templates": {"fr": {"body": "Appelez le +33145678901"}}}
    assert client.post("/console/api/v1/campaigns", json=campaign, headers=headers).status_code == 201
    body = client.get("/console/api/v1/campaigns/c1").json()["definition"]["templates"]["fr"]["body"]
    assert body == "Appelez le +33145678901"
    assert personal("GET", "deliveries") and personal("POST", "campaigns/c1/dry-run")
    assert personal("GET", "anything/else")  # unknown: scrubbed
