"""The shared Typer app and helpers for CLI command modules."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from geofence.service.runtime import Runtime, bootstrap
from geofence.service.settings import Settings, get_settings

app = typer.Typer(help="Geofencing and mobile-notification engine.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

T = TypeVar("T")


def checked_settings() -> Settings:
    """The settings, or exit with the reason (not a traceback) when they are refused."""
    from pydantic import ValidationError

    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            err_console.print(f"configuration error{' in ' + where if where else ''}: {error['msg']}")
        raise typer.Exit(2) from None


def load_runtime(settings: Settings | None = None) -> Runtime:
    return bootstrap(settings or checked_settings())


def progress(items: Iterable[T], *, total: int | None, label: str) -> Iterator[T]:
    """Iterate with a progress bar on stderr (hidden when stderr is not a terminal)."""
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)
