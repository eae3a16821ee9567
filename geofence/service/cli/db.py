"""CLI: ``geofence db upgrade|current|check`` — schema migrations (Alembic on PostgreSQL)."""

from __future__ import annotations

import typer

from geofence.service.cli.base import app, console, fail
from geofence.service.db import create_schema, is_postgres, make_engine
from geofence.service.settings import get_settings

db_app = typer.Typer(help="Database schema: migrations on PostgreSQL, direct creation on SQLite.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def upgrade(revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Migrate the database of GEOFENCE_DATABASE_URL (run before starting new API workers)."""
    from geofence.service.migrations import current_revision, migrate

    engine = make_engine(get_settings().database_url)
    try:
        if not is_postgres(engine):
            create_schema(engine)
            console.print("SQLite: tables created where missing (migrations are for PostgreSQL)")
            return
        migrate(engine, revision)
        console.print(f"database at revision {current_revision(engine) or '(none)'}")
    finally:
        engine.dispose()


@db_app.command("current")
def current() -> None:
    """Print the database's revision."""
    from geofence.service.migrations import current_revision

    engine = make_engine(get_settings().database_url)
    try:
        console.print(current_revision(engine) or "(no revision: not migrated)")
    finally:
        engine.dispose()


@db_app.command("check")
def check() -> None:
    """Exit 1 when the database schema differs from the code's tables (missing migration?)."""
    from geofence.service.migrations import schema_diff

    engine = make_engine(get_settings().database_url)
    try:
        diff = schema_diff(engine)
    finally:
        engine.dispose()
    if diff:
        for item in diff:
            console.print(repr(item))
        raise fail(f"{len(diff)} difference(s) between the database and the tables", code=1)
    console.print("schema matches the tables")
