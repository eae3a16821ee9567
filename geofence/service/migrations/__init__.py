"""Schema migrations (Alembic). PostgreSQL deployments use them; SQLite creates its tables directly.

``migrate(engine)`` is what the app, the worker and ``geofence db upgrade`` run. It holds a
PostgreSQL advisory lock so several API workers starting together migrate once, and it adopts a
database whose tables were made by ``create_all`` (before migrations existed, or by the test
fixtures) by creating what is missing and stamping it at head.

New revision after changing a table (against an up-to-date PostgreSQL database)::

    GEOFENCE_DATABASE_URL=postgresql+psycopg://... alembic revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

MIGRATIONS_DIR = Path(__file__).resolve().parent
_ADVISORY_LOCK_ID = 0x6E0F_E4CE  # any constant; one lock per database for "migrating now"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """A Config that needs no alembic.ini; ``url`` defaults to Settings' database_url in env.py."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.attributes["database_url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _heads() -> tuple[str, ...]:
    """The head revision(s) of the scripts shipped with this code (read once per process)."""
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def has_revisions() -> bool:
    return bool(_heads())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (see the module docstring for adoption and locking)."""
    import geofence.service.tables  # noqa: F401

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
        if not has_revisions():  # no revision written yet: nothing to run, create the tables
            SQLModel.metadata.create_all(conn)
            return
        if revision == "head" and MigrationContext.configure(conn).get_current_heads() == _heads():
            return  # already there (every process start on an up-to-date database)
        existing = set(inspect(conn).get_table_names())
        ours = set(SQLModel.metadata.tables)
        config = alembic_config(connection=conn)
        if "alembic_version" not in existing and existing & ours:
            SQLModel.metadata.create_all(conn)
            command.stamp(config, "head")
            return
        command.upgrade(config, revision)


def schema_diff(engine: Engine) -> list[Any]:
    """What autogenerate would change to make the database match the tables (empty = in sync)."""
    import geofence.service.tables  # noqa: F401

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))
