"""Every route checks its scope: walk the real app's routes (new routes are covered automatically)."""

from __future__ import annotations

import re

import pytest
from fastapi import APIRouter
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.testclient import TestClient

from geofence.service.app import create_app
from tests.conftest import make_key_headers

# Routes that authenticate differently on purpose: Twilio signs its webhooks; probes and metrics are
# for the platform (keep them on a private network); the console's pages take a session cookie
# (checked by test_every_console_route_needs_a_session).
PUBLIC_PATHS = re.compile(r"^/(healthz|readyz|metrics)$|twilio|^/console")
CONSOLE_OPEN = {"/console/login", "/console/logout", "/console", "/console/"}


def _scopes_of(dependant) -> set[str]:
    found = set()
    for sub in dependant.dependencies:
        scope = getattr(sub.call, "required_scope", None)
        if scope:
            found.add(scope)
        found |= _scopes_of(sub)
    return found


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}:]+(:int)?[^}]*\}", lambda m: "1" if m.group(1) else "x", path)


@pytest.fixture
def app(secure_settings, sqlite_engine):
    # every route is called without a key: the failed-check limit would answer 429 part way through
    limits = secure_settings.limits.model_copy(update={"failed_auth_rate_per_s": 0})
    return create_app(secure_settings.model_copy(update={"limits": limits}), engine=sqlite_engine)


def api_routes(app) -> list[tuple[str, str, RouteContext]]:
    """(method, full path, route) for every API route. FastAPI >= 0.16x includes routers lazily, so
    ``app.routes`` holds router objects; ``iter_route_contexts`` yields the effective routes (with the
    prefixes and the dependencies added by ``include_router``)."""
    return [
        (method, ctx.path, ctx)
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute)
        for method in sorted(ctx.methods - {"HEAD", "OPTIONS"})
    ]


def protected_routes(app) -> list[tuple[str, str, RouteContext]]:
    return [(m, p, r) for m, p, r in api_routes(app) if not PUBLIC_PATHS.search(p)]


def test_the_walk_sees_the_included_routers(app):
    paths = {p for _, p, _ in api_routes(app)}
    assert {"/healthz", "/readyz"} <= paths


def test_every_non_public_route_declares_exactly_one_scope(app):
    missing = [f"{m} {p}" for m, p, r in protected_routes(app) if len(_scopes_of(r.dependant)) != 1]
    assert not missing, f"routes without exactly one require_scope(...) dependency: {missing}"


def test_every_route_refuses_no_credentials_401_and_the_wrong_scope_403(app, sqlite_engine):
    keys = {scope: make_key_headers(sqlite_engine, scope) for scope in ("ingest", "admin")}
    problems = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path, route in protected_routes(app):
            url = _concrete(path)
            (scope,) = _scopes_of(route.dependant) or {"?"}
            anonymous = client.request(method, url)
            if anonymous.status_code != 401:
                problems.append(f"{method} {path}: {anonymous.status_code} without credentials")
            wrong = keys["admin" if scope == "ingest" else "ingest"]
            forbidden = client.request(method, url, headers=wrong)
            if forbidden.status_code != 403:
                problems.append(f"{method} {path}: {forbidden.status_code} with a key lacking {scope!r}")
            right = client.request(method, url, headers=keys.get(scope, {}))
            # device routes want the device's own credential besides the key (docs/security.md)
            needs_device = right.status_code == 403 and "X-Device-Token" in right.json()["detail"]
            if right.status_code in (401, 403) and not needs_device:
                problems.append(f"{method} {path}: {right.status_code} with a {scope!r} key")
    assert not problems, "\n".join(problems)


def test_every_console_route_needs_a_session(app):
    console = [(m, p, r) for m, p, r in api_routes(app) if p.startswith("/console") and p not in CONSOLE_OPEN]
    assert len(console) >= 10
    unguarded = [f"{m} {p}" for m, p, r in console if not _needs_session(r.dependant)]
    assert not unguarded, f"console routes without a session dependency: {unguarded}"
    problems = []
    with TestClient(app, raise_server_exceptions=False) as client:
        for method, path, _route in console:
            answer = client.request(method, _concrete(path), follow_redirects=False)
            signed_out = answer.status_code == 401 or (
                answer.status_code == 303 and answer.headers["location"].startswith("/console/login"))
            if not signed_out:
                problems.append(f"{method} {path}: {answer.status_code} without a session")
    assert not problems, "\n".join(problems)


def _needs_session(dependant) -> bool:
    subs = dependant.dependencies
    return any(getattr(sub.call, "console_session", False) or _needs_session(sub) for sub in subs)


def test_public_routes_answer_without_credentials(app):
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_the_walk_flags_a_route_that_forgot_its_scope(app):
    oops = APIRouter(prefix="/v1")

    @oops.get("/oops/{item_id}")
    def _oops(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    app.include_router(oops)
    flagged = [f"{m} {p}" for m, p, r in protected_routes(app) if len(_scopes_of(r.dependant)) != 1]
    assert flagged == ["GET /v1/oops/{item_id}"] or "GET /v1/oops/{item_id}" in flagged
