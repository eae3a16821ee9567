"""Errors of the zones package."""

from __future__ import annotations


class ZoneError(ValueError):
    """A zone (or a zone field) is invalid; ``str(err)`` is the clear, user-facing reason."""
