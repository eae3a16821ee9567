"""CLI: ``geofence zones import FILE`` (CSV or GeoJSON, per-line errors), ``geofence zones export`` and
``geofence zones resize --extract FILE`` (travel-time zones recomputed from a newer street extract)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from geofence.service import clock
from geofence.service.cli.base import app, console, err_console, fail, load_runtime, progress
from geofence.service.streets import configured_extract, load_extract
from zones.errors import ZoneError
from zones.io import read_zones_csv, read_zones_geojson, write_zones_geojson
from zones.osm import StreetExtract
from zones.travel import ZoneChange, resize

zones_app = typer.Typer(help="Zones: import from CSV / GeoJSON, export to GeoJSON, resize travel-time zones.")
app.add_typer(zones_app, name="zones")


@zones_app.command("import")
def import_zones(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="CSV or GeoJSON file."),
    extract: Path | None = typer.Option(
        None, "--extract", help="Street extract (.osm.pbf) for mode/method rows; default: the configured one."
    ),
) -> None:
    """Create or replace the file's zones. Bad lines are reported by number; good ones are kept.

    Rows with a ``mode`` (walk, drive, auto) or ``method`` (isochrone, circle) are sized by travel time.
    """
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"{file}: not UTF-8 (byte {exc.start})") from None
    is_geojson = file.suffix.lower() in (".geojson", ".json")
    runtime = load_runtime()
    streets = _extract(extract, runtime.settings) if ("mode" in text or "method" in text) else None
    try:
        zones, errors = (read_zones_geojson if is_geojson else read_zones_csv)(text, streets)
    except (ZoneError, ValueError) as exc:
        raise fail(f"{file}: {exc}") from None
    service = runtime.geofence
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


@zones_app.command("resize")
def resize_zones(
    extract: Path = typer.Option(..., "--extract", exists=True, dir_okay=False, readable=True,
                                 help="The (newer) street extract, .osm.pbf."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Report the changes, save nothing."),
) -> None:
    """Recompute every travel-time zone from EXTRACT (as each was asked: mode, minutes, method) and
    report how much each changed. Other zones are left alone. Point GEOFENCE_STREETS__EXTRACT_FILE at
    the same file so that new zones use it too."""
    runtime = load_runtime()
    streets = _extract(extract, runtime.settings)
    service = runtime.geofence
    zones = sorted((z for z in service.index.zones() if z.travel is not None), key=lambda z: z.id)
    changes: list[ZoneChange] = []
    failed = 0
    for zone in progress(zones, total=len(zones), label=f"resizing from {extract.name}"):
        try:
            new, change = resize(zone, streets)
            if not dry_run:
                service.save_zones([new], at=clock.now())
        except ZoneError as exc:
            failed += 1
            err_console.print(f"[red]zone {zone.id}:[/red] {exc}")
            continue
        changes.append(change)
    _report(changes, streets)
    verb = "would resize" if dry_run else "resized"
    console.print(f"{verb} {len(changes)} zone(s) from {extract.name}, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _was(before: str, after: str) -> str:
    return after if before == after else f"{before} -> {after}"


def _extract(path: Path | None, settings: object) -> StreetExtract | None:
    try:
        return load_extract(path) if path is not None else configured_extract(settings)  # type: ignore[arg-type]
    except ZoneError as exc:
        raise fail(str(exc)) from None


def _report(changes: list[ZoneChange], streets: StreetExtract | None) -> None:
    """One line per zone (soft-wrapped: greppable in logs): mode, what was drawn, area, overlap."""
    date = "" if streets is None or streets.info.date is None else f" ({streets.info.date:%Y-%m-%d})"
    console.print(f"zones recomputed from {streets.info.name if streets else '-'}{date}:", highlight=False)
    for c in changes:
        line = (
            f"  {c.zone_id}: {_was(c.before.mode, c.after.mode)}, {_was(c.before.method, c.after.method)}, "
            f"{c.area_before_m2 / 1e6:.3f} -> {c.area_after_m2 / 1e6:.3f} km² ({c.area_change:+.1%}), "
            f"{c.kept:.0%} of the old zone kept, {c.added:.0%} of the new one added"
        )
        if c.after.fallback:
            line += f"; {c.after.fallback}"
        console.print(line, soft_wrap=True, highlight=False, markup=False)
