"""Pagination: bounded limit, opaque cursors, 400 (never 500) on a forged cursor."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from geofence.service.pagination import MAX_LIMIT, Page, PageDep, Paginated, decode_cursor, encode_cursor

ITEMS = list(range(23))
api = FastAPI()


@api.get("/things")
def _things(page: PageDep) -> Paginated[int]:
    return page.build(ITEMS[page.offset : page.offset + page.limit + 1], int)


def test_walking_the_cursors_returns_every_item_once():
    client = TestClient(api)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        body = client.get("/things", params=params).json()
        seen += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ITEMS and pages == 3


def test_limit_is_bounded_and_bad_cursors_are_400():
    client = TestClient(api)
    assert client.get("/things", params={"limit": MAX_LIMIT + 1}).status_code == 422
    assert client.get("/things", params={"limit": 0}).status_code == 422
    for bad in ["!!!", "bm90IGpzb24", encode_cursor({"offset": -1}), encode_cursor({"offset": 10**30}),
                encode_cursor({"offset": "3"}), "W10"]:
        r = client.get("/things", params={"cursor": bad})
        assert r.status_code == 400, bad
        assert "cursor" in r.json()["detail"]


def test_exact_multiple_of_limit_ends_without_an_empty_page():
    page = Page(limit=5, position={"offset": 20})
    assert page.build([20, 21, 22], int).next_cursor is None
    assert Page(limit=3).build([0, 1, 2], int).next_cursor is None  # 3 fetched of limit+1: last page


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=20), max_size=5))
def test_cursor_round_trips(position):
    assert decode_cursor(encode_cursor(position)) == position


def test_every_list_endpoint_of_the_app_is_paginated(settings):
    """A GET that returns a bare list, or a page without the shared limit/cursor parameters, fails."""
    import typing

    from fastapi.routing import APIRoute, iter_route_contexts

    from geofence.service.app import create_app
    from geofence.service.pagination import page_params

    def uses_page(dependant) -> bool:
        return any(d.call is page_params or uses_page(d) for d in dependant.dependencies)

    app = create_app(settings)
    problems, pages = [], 0
    for ctx in iter_route_contexts(app.routes):
        if not isinstance(ctx.original_route, APIRoute) or "GET" not in ctx.methods:
            continue
        model = ctx.response_model
        if typing.get_origin(model) is list:
            problems.append(f"GET {ctx.path} returns a bare list: use PageDep + Paginated")
        elif getattr(model, "__name__", "").startswith("Paginated["):
            pages += 1
            if not uses_page(ctx.dependant):
                problems.append(f"GET {ctx.path} returns a page without PageDep (limit/cursor)")
    assert not problems, problems
    assert pages >= 1  # the walk does see the list endpoints
