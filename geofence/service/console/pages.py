"""The console's pages: sign-in and out, and one server-rendered page per section. The pages hold no rule
of the engine: they show what the API and the campaigns package answer."""

from __future__ import annotations

import secrets
import time
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from geofence.service import apikeys, clock
from geofence.service.console.api_proxy import call_api
from geofence.service.console.campaign_aids import legal_sms_grid
from geofence.service.console.context import PREFIX, console_of, page_session, render, session_of
from geofence.service.console.i18n import language_of
from geofence.service.console.people import consent_history, search_people
from geofence.service.console.session import COOKIE, ConsoleSession
from geofence.service.db import session_scope

router = APIRouter(prefix=PREFIX, include_in_schema=False)
LOGIN_CSRF = "geofence_console_login"
SessionDep = Annotated[ConsoleSession, Depends(page_session)]


def _safe_next(target: str | None) -> str:
    """Only paths inside the console: no open redirect."""
    if target and target.startswith(PREFIX + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return f"{PREFIX}/zones"


def _cookie_args(request: Request, max_age: int | None) -> dict[str, Any]:
    ctx = console_of(request)
    return {"httponly": True, "samesite": "strict", "secure": ctx.secure_cookies, "path": PREFIX,
            "max_age": max_age}


@router.get("/login")
def login_page(request: Request, next: str | None = None, error: str | None = None) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", None, login_csrf=token, next=_safe_next(next), error=error)
    response.set_cookie(LOGIN_CSRF, token, **_cookie_args(request, 900))
    return response  # type: ignore[no-any-return]


def _verify_admin_key(request: Request, token: str) -> str | None:
    with session_scope(console_of(request).engine) as db:
        key = apikeys.verify_api_key(db, token, at=clock.now())
    return key.id if key is not None and "admin" in key.scopes else None


@router.post("/login")
async def login(
    request: Request, api_key: Annotated[str, Form(max_length=512)],
    login_csrf: Annotated[str, Form(max_length=128)], next: Annotated[str, Form(max_length=512)] = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF)
    if not expected or not secrets.compare_digest(expected, login_csrf):
        return RedirectResponse(f"{PREFIX}/login?error=csrf", status_code=303)
    key_id = await run_in_threadpool(_verify_admin_key, request, api_key.strip())
    if key_id is None:
        return RedirectResponse(f"{PREFIX}/login?error=bad_key&next={quote(next)}", status_code=303)
    ctx = console_of(request)
    session = ConsoleSession(api_key.strip(), key_id, secrets.token_urlsafe(16), int(time.time()))
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, ctx.codec.seal(session), **_cookie_args(request, ctx.codec.max_age_s))
    response.delete_cookie(LOGIN_CSRF, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Sign out (CSRF-checked when a session exists; without one there is nothing to end)."""
    session = await run_in_threadpool(session_of, request)
    if session is not None:
        form = await request.form()
        if not console_of(request).codec.csrf_ok(session, str(form.get("csrf_token") or "")):
            return Response("missing or wrong CSRF token", status_code=403)
    response = RedirectResponse(f"{PREFIX}/login", status_code=303)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response


@router.get("")
@router.get("/")
def home() -> Response:
    return RedirectResponse(f"{PREFIX}/zones", status_code=303)


@router.get("/zones")
def zones_page(request: Request, session: SessionDep) -> Response:
    ctx = console_of(request)
    return render(request, "zones.html", session, basemap=ctx.basemap_style_url or "")  # type: ignore[no-any-return]


@router.get("/campaigns")
async def campaigns_page(request: Request, session: SessionDep) -> Response:
    status, body, _ = await call_api(console_of(request).api, "GET", "campaigns", api_key=session.api_key,
                                     query="limit=500")
    items = body.get("items", []) if status == 200 and isinstance(body, dict) else []
    return render(request, "campaigns.html", session, campaigns=items)  # type: ignore[no-any-return]


@router.get("/campaigns/new")
async def new_campaign_page(request: Request, session: SessionDep) -> Response:
    return await campaign_page(request, session, None)


@router.get("/campaigns/{campaign_id}")
async def campaign_page(request: Request, session: SessionDep, campaign_id: str | None) -> Response:
    ctx = console_of(request)
    definition: dict[str, Any] | None = None
    if campaign_id is not None:
        status, body, _ = await call_api(ctx.api, "GET", f"campaigns/{quote(campaign_id, safe='')}",
                                         api_key=session.api_key)
        if status != 200:
            return RedirectResponse(f"{PREFIX}/campaigns", status_code=303)
        definition = body
    grid = legal_sms_grid(ctx.legal_table, ctx.default_country)
    return render(request, "campaign.html", session, definition=definition,  # type: ignore[no-any-return]
                  legal=grid[0], grid=grid[1:], campaign_id=campaign_id)


@router.get("/live")
def live_page(request: Request, session: SessionDep) -> Response:
    ctx = console_of(request)
    return render(request, "live.html", session, basemap=ctx.basemap_style_url or "")  # type: ignore[no-any-return]


@router.get("/results")
async def results_page(request: Request, session: SessionDep, campaign: str | None = None,
                       window_hours: int = 24) -> Response:
    ctx = console_of(request)
    window_hours = min(max(window_hours, 1), 24 * 30)
    status, body, _ = await call_api(ctx.api, "GET", "campaigns", api_key=session.api_key, query="limit=500")
    campaigns = body.get("items", []) if status == 200 and isinstance(body, dict) else []
    snapshot = None
    chosen = campaign or (campaigns[0]["id"] if campaigns else None)
    if chosen:
        snapshot = await ctx.results.get(chosen, window_hours, session.api_key)
    return render(request, "results.html", session, campaigns=campaigns,  # type: ignore[no-any-return]
                  chosen=chosen, stats=snapshot.stats if snapshot else None,
                  taken_at=snapshot.taken_at if snapshot else None, window_hours=window_hours)


@router.get("/people")
async def people_page(
    request: Request, session: SessionDep, q: str = "", customer: str | None = None
) -> Response:
    ctx = console_of(request)
    q = q.strip()[:64]
    found = await run_in_threadpool(search_people, ctx.engine, q)
    deliveries: list[dict[str, Any]] = []
    for customer_id in found.customer_ids[:5]:
        status, body, _ = await call_api(ctx.api, "GET", "deliveries", api_key=session.api_key,
                                         query=f"customer_id={quote(customer_id)}&limit=50")
        if status == 200:
            deliveries.extend(body.get("items", []))
    if not q:
        status, body, _ = await call_api(ctx.api, "GET", "deliveries", api_key=session.api_key,
                                         query="limit=50")
        deliveries = body.get("items", []) if status == 200 else []
    history = None
    if customer:
        history = await consent_history(ctx.api, session.api_key, customer[:64], ctx.engine)
    return render(request, "people.html", session, q=q, optouts=found.opt_outs,  # type: ignore[no-any-return]
                  masked=found.masked, deliveries=deliveries, history=history, customer=customer,
                  lang_code=language_of(request))
