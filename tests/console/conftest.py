"""The console's test fixtures: the app served by uvicorn on a free loopback port (in a thread), keys, and
Debian's Chromium driven by Playwright. Browser tests skip without Chromium, except under CI=true."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from geofence.service.app import create_app
from geofence.service.settings import Settings
from tests.conftest import make_key_headers

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]
TWILIO_TOKEN = "console-test-twilio-token"
HASH_KEY = "console-test-hash-key"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@dataclass
class Served:
    url: str
    app: FastAPI
    settings: Settings
    admin: dict[str, str]
    ingest: dict[str, str]
    admin_key: str

    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.admin, timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(tmp: Path, **overrides: Any) -> Iterator[Served]:
    """Run the app with uvicorn in a thread until the generator is closed."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(
        env="test", database_url=f"sqlite:///{tmp}/console.db", outbox_dir=tmp / "outbox",
        export_dir=tmp / "exports", scheduler={"enabled": False}, auth_required=True, hash_key=HASH_KEY,
        twilio={"auth_token": TWILIO_TOKEN}, public_base_url=url, **overrides,
    )
    app = create_app(settings, run_jobs=False)
    engine = app.state.runtime.engine
    admin, ingest = make_key_headers(engine, "admin"), make_key_headers(engine, "ingest")
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield Served(url, app, settings, admin, ingest, admin["Authorization"].split(" ", 1)[1])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        # the app outlives the test (its lifespan gc.freeze()s it), and so does the process's WAL watch
        # on this file: leave no WAL behind for it to checkpoint while another test counts checkpoints
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        engine.dispose()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="session")
def screenshots(pytestconfig: pytest.Config) -> Path:
    """Where the browser tests leave a screenshot of each page (gitignored)."""
    default = pytestconfig.rootpath / "test-output" / "console"
    path = Path(os.environ.get("GEOFENCE_CONSOLE_SCREENSHOTS", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _browser_or_skip() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    missing = sync_playwright is None or not (CHROMIUM.exists() or shutil.which("chromium"))
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true: Chromium (apt-get install chromium) and playwright are required")
        pytest.skip("no Chromium at /usr/bin/chromium or no playwright: browser tests skipped")
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _browser_or_skip()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-GB")
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_in(page: Any, served: Served, path: str = "/console/zones") -> None:
    page.goto(served.url + path)
    page.fill("#api_key", served.admin_key)
    page.click("#sign-in")
    page.wait_for_url(f"**{path}")


def zones_named(served: Served, name: str) -> list[dict[str, Any]]:
    with served.api() as api:
        items = api.get("/v1/zones", params={"limit": 500}).json()["items"]
    return [z for z in items if z["name"] == name]


def map_ready(page: Any) -> None:
    page.wait_for_selector("body[data-ready=zones]")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical axe-core violations of the page as it is now."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    return [v for v in result["violations"] if v["impact"] in ("serious", "critical")]
