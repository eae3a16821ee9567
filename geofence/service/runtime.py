"""The composition root's state: settings, engine, event bus and each domain's singletons.

Each domain contributes a ``setup(runtime)`` hook (listed in ``SETUP_HOOKS``) that registers its
services, event subscribers and periodic jobs. The API process and the dispatcher process build the
same runtime; only what they start differs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from geofence.events import EventBus
from geofence.service.db import create_schema, is_postgres, make_engine
from geofence.service.loops import Loop
from geofence.service.settings import Settings
from geofence.service.wakeup import Wakeups

SETUP_HOOKS = (
    "geofence.service.wiring.geofence:setup",
    "geofence.service.wiring.campaigns:setup",
    "geofence.service.wiring.channels:setup",
    "geofence.service.wiring.ops:setup",
    "geofence.service.wiring.exports:setup",
)


@dataclass
class Job:
    """A periodic job: ``func(runtime)`` every ``every_s`` seconds. ``role`` says which process runs it."""

    id: str
    func: Callable[[Runtime], Any]
    every_s: float
    role: str = "worker"  # "worker" (dispatcher process) | "api" | "any"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    bus: EventBus = field(default_factory=EventBus)
    services: dict[str, Any] = field(default_factory=dict)
    jobs: list[Job] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)  # woken by commits (``geofence.service.loops``)
    wakeups: Wakeups = field(default_factory=Wakeups)

    def add_job(self, job: Job) -> None:
        self.jobs = [j for j in self.jobs if j.id != job.id] + [job]

    def add_loop(self, loop: Loop) -> None:
        self.loops = [x for x in self.loops if x.id != loop.id] + [loop]


def build_runtime(settings: Settings, engine: Engine | None = None) -> Runtime:
    engine = engine or make_engine(settings.database_url)
    if not is_postgres(engine):
        create_schema(engine)
    elif settings.migrate_on_start:
        # PostgreSQL runs the Alembic migrations (advisory-locked, so several workers may start at once).
        from geofence.service.migrations import migrate

        migrate(engine)
    runtime = Runtime(settings=settings, engine=engine)
    for spec in SETUP_HOOKS:
        module_name, func_name = spec.split(":")
        getattr(importlib.import_module(module_name), func_name)(runtime)
    return runtime
