"""Shared fixtures: settings, databases (SQLite always, PostgreSQL when reachable — required under CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from geofence.service.db import create_schema, make_engine
from geofence.service.settings import Settings
from tests.service.processes import fresh_postgres

PG_ADMIN_URL = os.environ.get(
    "GEOFENCE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _postgres_reachable() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A new PostgreSQL database with the schema, dropped afterwards; the test is skipped when the server
    is unreachable, and fails instead under CI=true."""
    problem = _postgres_reachable()
    if problem:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required under CI=true but is not reachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable ({problem})")
    with fresh_postgres(PG_ADMIN_URL) as url:
        yield url


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A throw-away PostgreSQL database for this test session, with the schema created once."""
    with throwaway_postgres() as url:
        yield url


def _truncate_all(engine: Engine) -> None:
    names = ", ".join(f'"{t.name}"' for t in SQLModel.metadata.sorted_tables)
    if names:
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {names} CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every test that takes this runs once on SQLite (a file) and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    create_schema(eng)
    yield eng
    if eng.dialect.name == "postgresql":
        _truncate_all(eng)
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """SQLite only, for tests that have no reason to run twice."""
    eng = make_engine(f"sqlite:///{tmp_path}/test.db")
    create_schema(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests: no scheduler threads, files under tmp_path, auth OFF (see ``secure_settings``)."""
    return Settings(
        env="test", hash_key="test-hash-key-not-secret", public_base_url="http://127.0.0.1:8000",
        database_url=f"sqlite:///{tmp_path}/app.db",
        outbox_dir=tmp_path / "outbox",
        export_dir=tmp_path / "exports",
        scheduler={"enabled": False},
        auth_required=False,
    )


@pytest.fixture
def secure_settings(settings: Settings) -> Settings:
    """Like ``settings`` (same database file) but every route checks its credentials."""
    return settings.model_copy(update={"auth_required": True})


def make_key_headers(engine: Engine, *scopes: str, name: str = "test") -> dict[str, str]:
    """Create an API key with ``scopes`` in ``engine``'s database; returns the request headers."""
    from geofence.service import apikeys, clock
    from geofence.service.db import session_scope

    with session_scope(engine) as s:
        _info, token = apikeys.create_api_key(s, name=name, scopes=set(scopes), at=clock.now())
    return {"Authorization": f"Bearer {token}"}


def _headers_for(settings: Settings, *scopes: str) -> dict[str, str]:
    eng = make_engine(settings.database_url)
    create_schema(eng)
    try:
        return make_key_headers(eng, *scopes, name="-".join(scopes))
    finally:
        eng.dispose()


@pytest.fixture
def admin_headers(secure_settings: Settings) -> dict[str, str]:
    """Headers with an ``admin`` key, valid for ``create_app(secure_settings)`` (its database file).

    For an app built on another engine use ``make_key_headers(engine, "admin")``.
    """
    return _headers_for(secure_settings, "admin")


@pytest.fixture
def ingest_headers(secure_settings: Settings) -> dict[str, str]:
    """Headers with an ``ingest`` key, valid for ``create_app(secure_settings)``."""
    return _headers_for(secure_settings, "ingest")
