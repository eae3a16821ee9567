"""What every console route needs, passed in once by ``mount_console``: no registry lookups."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.templating import Jinja2Templates
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp

from campaigns.legal_hours import LegalTable
from geofence.service import apikeys, clock
from geofence.service.console.i18n import language_of, translator
from geofence.service.console.results import ResultSnapshots
from geofence.service.console.session import COOKIE, CSRF_FIELD, CSRF_HEADER, ConsoleSession, SessionCodec
from geofence.service.console.zone_map import ZoneMap
from geofence.service.db import session_scope

HERE = Path(__file__).parent
PREFIX = "/console"
# pages are never cached, framed (clickjacking on a signed-in console) or MIME-sniffed
PAGE_HEADERS = {
    "Cache-Control": "no-store", "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'", "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class ConsoleContext:
    api: ASGIApp  # the application itself: the console calls its /v1 routes in-process
    engine: Engine
    codec: SessionCodec
    templates: Jinja2Templates
    legal_table: LegalTable
    secure_cookies: bool
    basemap_style_url: str | None
    zone_map: ZoneMap
    results: ResultSnapshots
    default_country: str = "FR"


class NotSignedIn(Exception):
    """Raised by page routes without a session: answered with a redirect to the sign-in page."""


def console_of(request: Request) -> ConsoleContext:
    return request.app.state.console  # type: ignore[no-any-return]


def session_of(request: Request) -> ConsoleSession | None:
    """The cookie's session, if its key is still an admin key (blocking: reads the key's row)."""
    ctx = console_of(request)
    session = ctx.codec.open(request.cookies.get(COOKIE))
    if session is None:
        return None
    with session_scope(ctx.engine) as db:  # a revoked key ends its console sessions at once
        key = apikeys.verify_api_key(db, session.api_key, at=clock.now())
    return session if key is not None and "admin" in key.scopes else None


def page_session(request: Request) -> ConsoleSession:
    """Dependency of pages (run in the thread pool): the session, else a redirect to sign in."""
    session = session_of(request)
    if session is None:
        raise NotSignedIn()
    return session


def api_session(request: Request) -> ConsoleSession:
    """Dependency of the console's JSON routes (run in the thread pool): the session, else 401."""
    session = session_of(request)
    if session is None:
        raise HTTPException(401, detail="sign in to the console first")
    return session


async def checked_session(request: Request) -> ConsoleSession:
    """Dependency of state-changing routes: a session and its CSRF token (header or form field)."""
    session = await run_in_threadpool(api_session, request)
    token = request.headers.get(CSRF_HEADER)
    if token is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        token = str((await request.form()).get(CSRF_FIELD) or "")
    if not console_of(request).codec.csrf_ok(session, token):
        raise HTTPException(403, detail="missing or wrong CSRF token")
    return session


for _dependency in (page_session, api_session, checked_session):
    _dependency.console_session = True  # type: ignore[attr-defined]  # lets tests find the guarded routes


def render(request: Request, template: str, session: ConsoleSession | None, **values: Any) -> Any:
    ctx = console_of(request)
    lang = language_of(request)
    return ctx.templates.TemplateResponse(
        request, template,
        {"t": translator(lang), "lang": lang, "prefix": PREFIX, "signed_in": session is not None,
         "csrf": ctx.codec.csrf_token(session) if session else "", "path": request.url.path, **values},
        headers=PAGE_HEADERS,
    )
