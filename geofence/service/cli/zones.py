"""CLI: ``geofence zones import FILE`` (CSV or GeoJSON, per-line errors) and ``geofence zones export``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from geofence.service import clock
from geofence.service.cli.base import app, console, err_console, fail, load_runtime, progress
from zones.errors import ZoneError
from zones.io import read_zones_csv, read_zones_geojson, write_zones_geojson

zones_app = typer.Typer(help="Zones: import from CSV / GeoJSON, export to GeoJSON.")
app.add_typer(zones_app, name="zones")


@zones_app.command("import")
def import_zones(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="CSV or GeoJSON file."),
) -> None:
    """Create or replace the file's zones. Bad lines are reported by number; good ones are kept."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"{file}: not UTF-8 (byte {exc.start})") from None
    is_geojson = file.suffix.lower() in (".geojson", ".json")
    try:
        zones, errors = (read_zones_geojson if is_geojson else read_zones_csv)(text)
    except (ZoneError, ValueError) as exc:
        raise fail(f"{file}: {exc}") from None
    service = load_runtime().geofence
    saved = 0
    for zone in progress(zones, total=len(zones), label=f"importing {file.name}"):
        try:
            service.save_zones([zone], at=clock.now())
            saved += 1
        except ZoneError as exc:
            err_console.print(f"[red]zone {zone.id}:[/red] {exc}")
    for problem in errors:
        err_console.print(f"[red]line {problem.line}:[/red] {problem.reason}")
    console.print(f"imported {saved} zone(s), {len(errors)} line(s) rejected")
    if errors and not saved:
        raise typer.Exit(1)


@zones_app.command("export")
def export_zones(
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Write every zone as a GeoJSON FeatureCollection."""
    service = load_runtime().geofence
    doc = json.dumps(write_zones_geojson(service.index.zones()), ensure_ascii=False, indent=1)
    if output is None:
        print(doc)
    else:
        output.write_text(doc + "\n", encoding="utf-8")
        err_console.print(f"wrote {output}")
