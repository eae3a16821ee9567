"""Recorded traces (CSV or GPX) -> ``LocationFix`` lists, for ``geofence replay``, tests and the demo.

Pure parsing of text already read; every unusable line is reported with its line number, the others are
kept.

CSV: a header row naming at least ``lat``, ``lng`` (or ``lon``) and ``recorded_at`` (or ``time``,
``timestamp``); optional ``device_id``, ``accuracy_m`` (or ``accuracy``), ``speed_mps``, ``heading_deg``,
``client_fix_id``. Times are ISO 8601 with an offset (``Z`` accepted).

GPX 1.0/1.1: every ``trkpt`` (and ``rtept``/``wpt`` with a time) with its ``<time>``; the accuracy comes
from ``<hdop>`` (x 5 m, a common rule of thumb) when present, else ``default_accuracy_m``.

``live_schedule`` says when a live deployment would have ingested a trace's fixes and run its sweep.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from xml.parsers import expat

from geofence.fixes import LocationFix

HDOP_TO_M = 5.0
ALIASES = {
    "lon": "lng", "long": "lng", "longitude": "lng", "latitude": "lat", "time": "recorded_at",
    "timestamp": "recorded_at", "accuracy": "accuracy_m", "speed": "speed_mps", "heading": "heading_deg",
    "device": "device_id", "fix_id": "client_fix_id",
}


@dataclass(frozen=True)
class TraceError:
    line: int
    reason: str


def parse_time(text: str) -> datetime:
    """ISO 8601 with an offset; a naive time is an error (we will not guess the time zone)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"time {text.strip()!r} has no time zone offset")
    return value


def _number(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def read_trace_csv(
    text: str, *, device_id: str = "replay", default_accuracy_m: float = 10.0
) -> tuple[list[LocationFix], list[TraceError]]:
    """Parse a CSV trace. Returns the fixes (file order) and the rejected lines."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
    except csv.Error as exc:
        return [], [TraceError(1, f"unreadable header: {exc}")]
    if header is None:
        return [], [TraceError(1, "empty file: expected a header row")]
    names = [ALIASES.get(n.strip().lower(), n.strip().lower()) for n in header]
    missing = {"lat", "lng", "recorded_at"} - set(names)
    if missing:
        return [], [TraceError(1, f"header lacks column(s): {', '.join(sorted(missing))}")]
    reader.fieldnames = names
    fixes: list[LocationFix] = []
    errors: list[TraceError] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            errors.append(TraceError(reader.line_num, f"unreadable line: {exc}"))
            break
        line = reader.line_num
        try:
            lat, lng = _number(row.get("lat")), _number(row.get("lng"))
            if lat is None or lng is None:
                raise ValueError("lat and lng are required")
            accuracy = _number(row.get("accuracy_m"))
            fixes.append(
                LocationFix(
                    device_id=(row.get("device_id") or "").strip() or device_id, lat=lat, lng=lng,
                    accuracy_m=accuracy if accuracy is not None else default_accuracy_m,
                    recorded_at=parse_time(row.get("recorded_at") or ""),
                    speed_mps=_number(row.get("speed_mps")), heading_deg=_number(row.get("heading_deg")),
                    client_fix_id=(row.get("client_fix_id") or "").strip() or None,
                )
            )
        except (ValueError, TypeError) as exc:
            errors.append(TraceError(line, str(exc)))
    return fixes, errors


def read_trace_gpx(
    text: str, *, device_id: str = "replay", default_accuracy_m: float = 10.0
) -> tuple[list[LocationFix], list[TraceError]]:
    """Parse a GPX document's track points. Points without a usable time or position are reported with
    the file line their element starts on."""
    try:
        points = _gpx_points(text)
    except expat.ExpatError as exc:
        return [], [TraceError(exc.lineno, f"not valid XML: {expat.ErrorString(exc.code)}")]
    fixes: list[LocationFix] = []
    errors: list[TraceError] = []
    for n, (line, attrs, children) in enumerate(points, 1):
        try:
            lat, lng = _number(attrs.get("lat")), _number(attrs.get("lon"))
            if lat is None or lng is None:
                raise ValueError("point without lat/lon")
            if "time" not in children:
                raise ValueError("point without <time>")
            hdop = _number(children.get("hdop"))
            fixes.append(
                LocationFix(
                    device_id=device_id, lat=lat, lng=lng,
                    accuracy_m=hdop * HDOP_TO_M if hdop else default_accuracy_m,
                    recorded_at=parse_time(children["time"]),
                )
            )
        except ValueError as exc:
            errors.append(TraceError(line, f"point {n}: {exc}"))
    return fixes, errors


_POINTS = frozenset({"trkpt", "rtept", "wpt"})


def _gpx_points(text: str) -> list[tuple[int, dict[str, str], dict[str, str]]]:
    """Each point element as (file line of its start tag, its attributes, its children's texts by local
    name). expat directly, not ElementTree: only the parser knows the line an element starts on."""
    parser = expat.ParserCreate(namespace_separator="}")
    points: list[tuple[int, dict[str, str], dict[str, str]]] = []
    open_point: dict[str, str] | None = None
    child: str | None = None
    texts: list[str] = []

    def start(tag: str, attrs: dict[str, str]) -> None:
        nonlocal open_point, child
        name = _local(tag)
        if open_point is None and name in _POINTS:
            open_point = {}
            points.append((parser.CurrentLineNumber, {_local(k): v for k, v in attrs.items()}, open_point))
        elif open_point is not None and child is None:
            child = name
            texts.clear()

    def end(tag: str) -> None:
        nonlocal open_point, child
        name = _local(tag)
        if open_point is not None and child == name:
            open_point[name] = "".join(texts)
            child = None
        elif open_point is not None and child is None and name in _POINTS:
            open_point = None

    def data(chunk: str) -> None:
        if child is not None:
            texts.append(chunk)

    parser.StartElementHandler, parser.EndElementHandler, parser.CharacterDataHandler = start, end, data
    parser.Parse(text, True)  # local files given on the command line or shipped test data
    return points


def read_trace(
    text: str, *, name: str, device_id: str = "replay", default_accuracy_m: float = 10.0
) -> tuple[list[LocationFix], list[TraceError]]:
    """Dispatch on the file name (``.gpx`` or anything else as CSV)."""
    reader = read_trace_gpx if name.lower().endswith(".gpx") else read_trace_csv
    return reader(text, device_id=device_id, default_accuracy_m=default_accuracy_m)


def thin(fixes: list[LocationFix], every: timedelta) -> list[LocationFix]:
    """Keep at most one fix per ``every`` per device: real phones report far less often than loggers."""
    last: dict[str, datetime] = {}
    kept: list[LocationFix] = []
    for fix in fixes:
        previous = last.get(fix.device_id)
        if previous is None or fix.recorded_at - previous >= every:
            kept.append(fix)
            last[fix.device_id] = fix.recorded_at
    return kept


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@dataclass(frozen=True, slots=True)
class Ingest:
    """Fixes that arrive together, at ``at`` (the last one's time)."""

    at: datetime
    fixes: list[LocationFix]


@dataclass(frozen=True, slots=True)
class Sweep:
    """The presence sweep at ``at``."""

    at: datetime


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def live_schedule(
    fixes: Sequence[LocationFix], *, sweep_every: timedelta, batch: int = 1,
    drain: timedelta = timedelta(hours=1),
) -> Iterator[Ingest | Sweep]:
    """What a live deployment does with a trace, in order: each fix arrives at its own time (``batch``
    > 1: up to that many fixes recorded within one sweep interval arrive together, at the last one's
    time), and the sweep runs at every multiple of ``sweep_every`` (from the Unix epoch) from the first
    fix until ``drain`` after the last, after the fixes recorded up to then. Replaying this schedule gives
    the events of the live path: timer dwells and silence exits fire inside the trace's gaps.

    Parameters
    ----------
    fixes : the trace, in time order.
    sweep_every : the scheduler's sweep interval (``scheduler.sweep_every_s``), > 0.
    batch : fixes per ingest call at most. With more than one, a device's head (its last fix, written
        once a heartbeat) may be written at other fixes than live, which moves a silence exit by less
        than a heartbeat.
    drain : how long the sweep goes on after the last fix (the trace's timers run out).
    """
    if sweep_every <= timedelta(0) or batch < 1:
        raise ValueError("sweep_every must be positive and batch at least 1")
    if not fixes:
        return
    first = fixes[0].recorded_at
    tick = _EPOCH - ((_EPOCH - first) // sweep_every) * sweep_every  # the first multiple at or after it
    end = fixes[-1].recorded_at + drain
    i, n = 0, len(fixes)
    while True:
        while i < n and fixes[i].recorded_at <= tick:
            j = i + 1
            while j < n and j - i < batch and fixes[j].recorded_at <= tick:
                j += 1
            yield Ingest(fixes[j - 1].recorded_at, list(fixes[i:j]))
            i = j
        yield Sweep(tick)
        if i >= n and tick >= end:
            return
        tick += sweep_every
