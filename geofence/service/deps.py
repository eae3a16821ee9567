"""FastAPI dependencies (``XDep`` aliases)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlmodel import Session

from geofence.service.runtime import Runtime
from geofence.service.settings import Settings


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


# ``async``: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request for an
# attribute read
async def runtime_dep(request: Request) -> Runtime:
    return get_runtime(request)


async def get_settings_dep(request: Request) -> Settings:
    return get_runtime(request).settings


def get_session(request: Request) -> Iterator[Session]:
    with Session(get_runtime(request).engine, expire_on_commit=False) as session:
        yield session


RuntimeDep = Annotated[Runtime, Depends(runtime_dep)]
SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
