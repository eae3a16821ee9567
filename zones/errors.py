"""Errors of the zones package."""

from __future__ import annotations


class ZoneError(ValueError):
    """A zone (or a zone field) is invalid; ``str(err)`` is the clear, user-facing reason."""


class UnreadableFile(ZoneError):
    """A zone file that cannot be read as a whole (not JSON, not a FeatureCollection, a CSV without its
    required header): nothing in it is imported. Problems of single rows are ``io.RowError`` instead."""
