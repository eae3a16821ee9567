"""Pagination shared by every list endpoint: ``?limit=`` (1..500) and an opaque ``?cursor=``.

The cursor is base64url JSON that the *server* writes, so a route may page by offset
(``page.offset`` / ``page.next_cursor_after(len(items))``) or by keyset
(``page.position`` / ``page.cursor_for(last_created_at=..., last_id=...)``) and switch later without
breaking clients. A cursor the server did not write is a 400, never a 500.

Usage::

    @router.get("/v1/things")
    def list_things(session: SessionDep, page: PageDep) -> Paginated[ThingPublic]:
        rows = session.exec(select(Thing).order_by(Thing.id).offset(page.offset).limit(page.limit + 1)).all()
        return page.build(rows, ThingPublic.model_validate)
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, HTTPException, Query
from pydantic import BaseModel

MAX_LIMIT = 500
DEFAULT_LIMIT = 100
MAX_CURSOR_CHARS = 1024
MAX_OFFSET = 10**9

T = TypeVar("T")
R = TypeVar("R")


class Paginated(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None  # pass back as ?cursor= for the next page; null on the last page


def encode_cursor(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True, default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The position a cursor holds; raises 400 when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = json.loads(raw)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        position = None
    if not isinstance(position, dict):
        raise HTTPException(400, detail="invalid cursor: pass back the next_cursor of a previous page")
    return position


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_LIMIT
    position: dict[str, Any] = field(default_factory=dict)  # empty on the first page

    @property
    def offset(self) -> int:
        value = self.position.get("offset", 0)
        # bounded: a huge offset from a forged cursor must not overflow the database's BIGINT
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_OFFSET:
            raise HTTPException(400, detail="invalid cursor: bad offset")
        return value

    def cursor_for(self, **position: Any) -> str:
        return encode_cursor(position)

    def next_cursor_after(self, returned: int) -> str | None:
        """Offset paging: the next cursor, or None when this page was not full."""
        return encode_cursor({"offset": self.offset + returned}) if returned >= self.limit else None

    def build(self, rows: Sequence[R], convert: Callable[[R], T]) -> Paginated[T]:
        """Offset paging from ``limit + 1`` fetched rows: the extra row only says a next page exists."""
        items = [convert(row) for row in rows[: self.limit]]
        more = len(rows) > self.limit
        return Paginated[T](items=items, next_cursor=self.next_cursor_after(len(items)) if more else None)


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page (max {MAX_LIMIT}).")] = (
        DEFAULT_LIMIT
    ),
    cursor: Annotated[
        str | None, Query(max_length=MAX_CURSOR_CHARS, description="next_cursor from the previous page.")
    ] = None,
) -> Page:
    return Page(limit=limit, position=decode_cursor(cursor) if cursor else {})


PageDep = Annotated[Page, Depends(page_params)]
