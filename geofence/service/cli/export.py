"""CLI: ``geofence export KIND --format csv|ndjson [--since CURSOR] [--out FILE]`` and
``geofence export all --dir DIR [--incremental]``.

The next cursor is printed on stderr (``next cursor: ...``): pass it as ``--since`` next time.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import typer

from campaigns.export import FORMATS, KIND_NAMES, CursorError, UnknownKind, count_rows, plan_export
from campaigns.export.pipeline import export_file_name, render_plan, write_export
from geofence.service import clock
from geofence.service.cli.base import app, console, err_console, fail, load_runtime, progress
from geofence.service.runtime import Runtime
from geofence.service.wiring.exports import export_incremental


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)} (got {fmt!r})")
    return fmt


@app.command("export")
def export(
    kind: str = typer.Argument(..., help=f"One of: {', '.join(KIND_NAMES)}, or 'all'."),
    fmt: str | None = typer.Option(
        None, "--format", "-f", help="csv (HubSpot-ready) or ndjson (Segment spec); default csv, 'all': both."
    ),
    since: str | None = typer.Option(None, help="Cursor printed by the previous export (incremental)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: standard output)."),
    directory: Path | None = typer.Option(None, "--dir", help="For 'all': directory to write into."),
    incremental: bool = typer.Option(
        False, help="For 'all': continue from the cursors the daily export remembers, and update them."
    ),
    settle_s: float = typer.Option(2.0, help="Leave rows changed in the last N seconds for next time."),
) -> None:
    """Export customers, consents, opt-outs, zone events or deliveries for a CRM."""
    runtime = load_runtime()
    if kind == "all":
        _export_all(runtime, fmt, directory, incremental=incremental, settle_s=settle_s)
        return
    fmt = _check_format(fmt or "csv")
    at = clock.now()
    try:
        plan = plan_export(runtime.engine, kind, since, at=at, settle_s=settle_s)
    except (UnknownKind, CursorError) as exc:
        raise fail(f"{kind}: {exc}") from None
    total = count_rows(runtime.engine, plan)
    bar = partial(progress, total=total, label=f"exporting {kind}")
    if out is None:
        for chunk in render_plan(runtime.engine, plan, fmt, wrap=bar):
            sys.stdout.write(chunk)
        sys.stdout.flush()
    else:
        written = write_export(runtime.engine, plan, fmt, out, wrap=bar)
        err_console.print(f"wrote {written.rows} {kind} rows to {written.path} ({written.bytes} bytes)")
    # soft_wrap: the cursor must stay on one line to be copied back.
    cursor = plan.next_cursor or "(none: nothing exported)"
    err_console.print(f"next cursor: {cursor}", soft_wrap=True, highlight=False)


def _export_all(
    runtime: Runtime, fmt: str | None, directory: Path | None, *, incremental: bool, settle_s: float
) -> None:
    if directory is None:
        raise fail("'export all' needs --dir DIR")
    formats = FORMATS if fmt in (None, "both") else (_check_format(fmt),)
    at = clock.now()
    if incremental:
        written = export_incremental(
            runtime.engine, directory, at=at, intake=runtime.export_intake, formats=formats, settle_s=settle_s
        )
    else:
        written = []
        for kind in progress(KIND_NAMES, total=len(KIND_NAMES), label="exporting"):
            plan = plan_export(runtime.engine, kind, None, at=at, settle_s=settle_s)
            for f in formats:
                path = directory / export_file_name(kind, f, at)
                written.append(write_export(runtime.engine, plan, f, path))
    for w in written:
        console.print(f"{w.kind:<12} {w.fmt:<7} {w.rows:>9} rows  {w.path}")
    if not written:
        console.print("nothing new to export")
