"""Alembic environment: the URL comes from Settings (or a connection handed over by ``migrate()``)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import geofence.service.tables  # noqa: F401  (registers every table on the metadata)
from geofence.service.db import make_engine
from geofence.service.settings import get_settings

config = context.config
target_metadata = SQLModel.metadata


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)  # type: ignore[arg-type]


def run_offline() -> None:
    """``alembic upgrade head --sql``: print the SQL instead of running it."""
    url = config.attributes.get("database_url") or get_settings().database_url
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.attributes.get("database_url") or get_settings().database_url)
    try:
        with engine.connect() as conn:
            _configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite")
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
