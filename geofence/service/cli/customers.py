"""CLI: ``geofence customers import|export|erase``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlmodel import Session

from campaigns.customer_import import ImportReport, import_customers
from campaigns.customers import CustomerError
from campaigns.privacy import erase_customer, export_customer
from geofence.service import clock
from geofence.service.cli.base import app, console, err_console, fail, load_runtime, progress
from geofence.service.db import session_scope
from geofence.service.location_data import SqlLocationData
from geofence.service.runtime import Runtime

customers_app = typer.Typer(help="Customers and their consents: CSV import, access export, erasure.")
app.add_typer(customers_app, name="customers")

COMMIT_EVERY_LINES = 500  # a crash mid-file keeps what was already imported


def _count_lines(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def _import(runtime: Runtime, file: Path, recorded_by: str) -> ImportReport:
    total = _count_lines(file)
    hash_key = runtime.settings.hash_key.get_secret_value()
    with Session(runtime.engine, expire_on_commit=False) as session, file.open(
        encoding="utf-8-sig", newline=""
    ) as fh:
        done = [0]

        def checkpoint(_line: int) -> None:
            done[0] += 1
            if done[0] % COMMIT_EVERY_LINES == 0:
                session.commit()

        try:
            report = import_customers(
                session, progress(fh, total=total, label=f"importing {file.name}"), at=clock.now(),
                hash_key=hash_key, recorded_by=recorded_by, on_line=checkpoint,
            )  # fmt: skip
        except CustomerError as exc:
            session.rollback()
            raise fail(f"{file}: {exc}") from None
        except UnicodeDecodeError as exc:
            session.commit()
            raise fail(f"{file}: not UTF-8 (byte {exc.start}); lines before it were imported") from None
        session.commit()
    return report


@customers_app.command("import")
def import_file(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="UTF-8 CSV file."),
    recorded_by: str = typer.Option("cli-import", help="Who recorded these consents (kept in the ledger)."),
) -> None:
    """Import customers and their consents; bad lines are reported by number, good lines are kept."""
    runtime = load_runtime()
    try:
        report = _import(runtime, file, recorded_by)
    finally:
        runtime.engine.dispose()
    for problem in report.errors:
        err_console.print(f"[red]line {problem.line}:[/red] {problem.reason}")
    for problem in report.suppressed:
        err_console.print(f"[yellow]line {problem.line}:[/yellow] {problem.reason}")
    if report.ignored_columns:
        err_console.print(f"ignored columns: {', '.join(report.ignored_columns)}")
    console.print(
        f"{report.lines} lines: {report.created} created, {report.updated} updated, "
        f"{report.consents_recorded} consents recorded, {len(report.suppressed)} suppressed, "
        f"{report.failed} rejected"
    )
    if report.failed:
        raise typer.Exit(1)


@customers_app.command("export")
def export(customer_id: str = typer.Argument(..., help="Customer id.")) -> None:
    """Print everything held on one customer as JSON (right of access)."""
    runtime = load_runtime()
    try:
        with session_scope(runtime.engine) as session:
            data = export_customer(session, customer_id, at=clock.now(), location=SqlLocationData())
    except CustomerError as exc:
        raise fail(str(exc)) from None
    finally:
        runtime.engine.dispose()
    print(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True))


@customers_app.command("erase")
def erase(
    customer_id: str = typer.Argument(..., help="Customer id."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Erase a customer's personal data; the number stays on the suppression list as a keyed hash."""
    if not yes:
        typer.confirm(f"Erase customer {customer_id}? This cannot be undone", abort=True)
    runtime = load_runtime()
    try:
        with session_scope(runtime.engine) as session:
            counts = erase_customer(
                session, customer_id, at=clock.now(), location=SqlLocationData(), recorded_by="cli"
            )
    except CustomerError as exc:
        raise fail(str(exc)) from None
    finally:
        runtime.engine.dispose()
    console.print(f"erased {customer_id}: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
