"""CLI: ``geofence demo`` — the whole engine on real GPS traces, in under a minute, no credentials."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer

from geofence.service.cli.base import app, console, progress


@app.command()
def demo(
    workdir: Path = typer.Option(
        Path("var/demo"), "--dir", help="Working directory (its demo database is reset on every run)."
    ),
) -> None:
    """Replay real traces through ingest, campaigns, outbox, STOP and CRM export on a simulated clock."""
    from geofence.service.demo import run_demo

    def bar(items: Sequence[Any], label: str) -> Iterable[Any]:
        return progress(items, total=len(items), label=label)

    def emit(line: str) -> None:
        console.print(line, highlight=False, markup=False, soft_wrap=True)

    run_demo(workdir, emit=emit, wrap=bar)
