"""The marketer's console, served by the API application under ``/console``.

Server-rendered pages (Jinja2) with a little vanilla JavaScript and MapLibre GL JS shipped in
``static/vendor``. Signing in exchanges an admin API key for a session cookie; every read or change
then goes through the ``/v1`` API in-process with that key (``api_proxy``), so the console is an adapter
with no rule of its own. See docs/console.md.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine

from campaigns.legal_hours import LegalTable
from geofence.service.console.context import HERE, PREFIX, ConsoleContext, NotSignedIn
from geofence.service.console.results import ResultSnapshots
from geofence.service.console.session import SessionCodec
from geofence.service.console.zone_map import ZoneMap
from geofence.service.settings import Settings

__all__ = ["mount_console"]


def mount_console(app: FastAPI, *, engine: Engine, settings: Settings, legal_table: LegalTable) -> None:
    """Add the console's routes and static files to ``app``."""
    from geofence.service.console import endpoints, pages

    console = settings.console
    app.state.console = ConsoleContext(
        api=app,
        engine=engine,
        codec=SessionCodec(settings.hash_key.get_secret_value(), max_age_s=console.session_max_age_s),
        templates=Jinja2Templates(directory=HERE / "templates"),
        legal_table=legal_table,
        secure_cookies=settings.public_base_url.lower().startswith("https://"),
        basemap_style_url=console.basemap_style_url,
        zone_map=ZoneMap(engine),
        results=ResultSnapshots(app),
        default_country=console.default_country,
    )
    app.include_router(pages.router)
    app.include_router(endpoints.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.exception_handler(NotSignedIn)
    async def _sign_in_first(request: Request, _exc: NotSignedIn) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"{PREFIX}/login?next={target}", status_code=303)
