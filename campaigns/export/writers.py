"""Streaming writers: records in, text chunks out, in constant memory.

A chunk groups ``chunk_rows`` lines so an HTTP response or a file write is not one syscall per row.
Nothing here holds more than one chunk.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import msgspec

# msgspec (already a dependency, for the ingest hot path) encodes ~5x faster than json.dumps; compact,
# UTF-8 kept as is; anything unexpected (a Decimal, a date) is written as its str().
_ENCODER = msgspec.json.Encoder(enc_hook=str)
FORMATS = ("csv", "ndjson")
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "ndjson": "application/x-ndjson"}


def csv_chunks(
    header: Sequence[str], rows: Iterable[Sequence[str]], *, chunk_rows: int = 500
) -> Iterator[str]:
    """RFC 4180 CSV (CRLF line ends, minimal quoting), header first — even for an empty export."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    pending = 1
    for row in rows:
        writer.writerow(row)
        pending += 1
        if pending >= chunk_rows:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if pending:
        yield buffer.getvalue()


def ndjson_chunks(records: Iterable[dict[str, Any]], *, chunk_rows: int = 500) -> Iterator[str]:
    """One compact JSON object per line (``\\n``), UTF-8 kept as is."""
    lines: list[str] = []
    for record in records:
        lines.append(_ENCODER.encode(record).decode())
        if len(lines) >= chunk_rows:
            yield "\n".join(lines) + "\n"
            lines.clear()
    if lines:
        yield "\n".join(lines) + "\n"


def render(
    fmt: str,
    items: Iterable[Any],
    *,
    header: Sequence[str],
    row: Callable[[Any], Sequence[str]],
    records: Callable[[Any], Iterable[dict[str, Any]]],
) -> Iterator[str]:
    """Render an item stream as ``csv`` (one row per item) or ``ndjson`` (zero or more per item)."""
    if fmt == "csv":
        return csv_chunks(header, (row(item) for item in items))
    if fmt == "ndjson":
        return ndjson_chunks(record for item in items for record in records(item))
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
