"""One export pipeline, two renderings: plan (snapshot) -> records (keyset batches) -> CSV or NDJSON.

The API streams :func:`render_plan` in a ``StreamingResponse``; the CLI and the daily job write it to a
file with :func:`write_export`. Both hand the plan's ``next_cursor`` back to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from campaigns.export.csv_rows import CSV_LAYOUTS
from campaigns.export.segment import SEGMENT_RENDERERS
from campaigns.export.sources import ExportPlan, iter_records
from campaigns.export.writers import render

EXTENSIONS = {"csv": "csv", "ndjson": "ndjson"}


def render_plan(
    engine: Engine,
    plan: ExportPlan,
    fmt: str,
    *,
    batch_size: int = 1000,
    wrap: Callable[[Iterator[Any]], Iterable[Any]] | None = None,
) -> Iterator[str]:
    """Text chunks of the export. ``wrap`` sees every record (the CLI's progress bar)."""
    header, row = CSV_LAYOUTS[plan.kind.name]
    records: Iterable[Any] = iter_records(engine, plan, batch_size=batch_size)
    if wrap is not None:
        records = wrap(iter(records))
    return render(fmt, records, header=header, row=row, records=SEGMENT_RENDERERS[plan.kind.name])


@dataclass(frozen=True)
class WrittenExport:
    kind: str
    fmt: str
    path: Path
    bytes: int
    rows: int  # records read from the tables (an NDJSON file may hold more lines)
    next_cursor: str | None


def write_export(
    engine: Engine,
    plan: ExportPlan,
    fmt: str,
    path: Path,
    *,
    batch_size: int = 1000,
    wrap: Callable[[Iterator[Any]], Iterable[Any]] | None = None,
) -> WrittenExport:
    """Write to ``path`` atomically (a temporary file renamed at the end: no half file on a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    rows = 0

    def counted(records: Iterator[Any]) -> Iterator[Any]:
        nonlocal rows
        for record in wrap(records) if wrap is not None else records:
            rows += 1
            yield record

    with tmp.open("w", encoding="utf-8", newline="") as out:
        for chunk in render_plan(engine, plan, fmt, batch_size=batch_size, wrap=counted):
            out.write(chunk)
    os.replace(tmp, path)
    return WrittenExport(plan.kind.name, fmt, path, path.stat().st_size, rows, plan.next_cursor)


def export_file_name(kind: str, fmt: str, at: datetime) -> str:
    return f"{kind}-{at.strftime('%Y%m%dT%H%M%SZ')}.{EXTENSIONS[fmt]}"
