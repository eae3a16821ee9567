"""The only wall-clock read in the code base: adapters call ``now()``, the core takes ``at``."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
