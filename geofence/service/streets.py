"""The operator's street extract, read once per process and file version (travel-time zones).

Reading a regional ``.osm.pbf`` takes seconds to minutes, so the result is kept per (path, size,
modification time): replacing the file is noticed on the next zone that needs it.
"""

from __future__ import annotations

import threading
from pathlib import Path

from geofence.service.settings import Settings
from zones.osm import StreetExtract, read_extract

_lock = threading.Lock()
_cache: dict[tuple[str, int, int], StreetExtract] = {}


def load_extract(path: Path) -> StreetExtract:
    """The extract at ``path`` (cached). Raises ``ZoneError`` if missing or unreadable."""
    resolved = path.expanduser().resolve()
    try:
        stat = resolved.stat()
        key = (str(resolved), stat.st_size, stat.st_mtime_ns)
    except OSError:
        key = (str(resolved), -1, -1)  # read_extract says it is missing
    with _lock:  # one reader at a time: two requests must not both spend a minute on the same file
        found = _cache.get(key)
        if found is None:
            found = read_extract(resolved)
            _cache.clear()  # one extract is in use at a time; keep only the newest
            _cache[key] = found
        return found


def configured_extract(settings: Settings) -> StreetExtract | None:
    """The extract of ``GEOFENCE_STREETS__EXTRACT_FILE``, or None when unset."""
    path = settings.streets.extract_file
    return None if path is None else load_extract(path)
