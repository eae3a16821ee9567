"""CLI: ``geofence replay TRACE`` — feed a recorded CSV or GPX trace through the ingest path.

The replay's clock is the trace's: each batch is ingested with ``at`` = its last fix time, and the
presence sweep runs at that time too, so dwell-by-timer and silence exits happen as they would live.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import typer

from geofence.service.cli.base import app, console, err_console, fail, load_runtime, progress
from geofence.traces import read_trace, thin


@app.command()
def replay(
    trace: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="CSV or GPX trace."),
    device_id: str = typer.Option("replay", help="Device id for traces that carry none (GPX)."),
    accuracy_m: float = typer.Option(10.0, help="Accuracy for points that carry none."),
    every_s: float = typer.Option(0.0, help="Keep one fix per this many seconds (0 = all)."),
    batch: int = typer.Option(100, min=1, max=1000, help="Fixes per ingest call."),
    skip_consent: bool = typer.Option(
        False, help="Bypass the location-consent gate (a trace of a device without a registered customer)."
    ),
) -> None:
    """Replay a trace and print the zone events it produces."""
    try:
        text = trace.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"{trace}: not UTF-8 (byte {exc.start})") from None
    fixes, errors = read_trace(text, name=trace.name, device_id=device_id, default_accuracy_m=accuracy_m)
    for problem in errors:
        err_console.print(f"[red]{trace.name} line {problem.line}:[/red] {problem.reason}")
    if not fixes:
        raise fail(f"{trace}: no usable fix")
    fixes.sort(key=lambda f: f.recorded_at)
    if every_s > 0:
        fixes = thin(fixes, timedelta(seconds=every_s))
    runtime = load_runtime()
    if skip_consent:
        runtime.geofence.location_consent = None
    service = runtime.geofence
    batches = [fixes[i : i + batch] for i in range(0, len(fixes), batch)]
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    n_events = 0
    for chunk in progress(batches, total=len(batches), label=f"replaying {trace.name}"):
        at = chunk[-1].recorded_at
        outcome = service.ingest(chunk, at=at)
        for r in outcome.results:
            counts[r.status] += 1
        for event in [*outcome.events, *service.sweep(at)]:
            n_events += 1
            console.print(
                f"{event.at.isoformat()}  {event.kind.value:<5}  zone={event.zone_id}  "
                f"device={event.device_id}  reason={event.reason}"
            )
    last = fixes[-1].recorded_at
    for event in service.sweep(last + timedelta(hours=1)):  # let the timers of the trace's end run out
        n_events += 1
        console.print(
            f"{event.at.isoformat()}  {event.kind.value:<5}  zone={event.zone_id}  "
            f"device={event.device_id}  reason={event.reason}"
        )
    if counts["rejected"] == len(fixes) and not skip_consent:
        err_console.print("every fix was rejected: is the device registered with location consent? "
                          "(--skip-consent replays without the gate)")
    console.print(
        f"{len(fixes)} fixes: {counts['accepted']} accepted, {counts['duplicate']} duplicate, "
        f"{counts['rejected']} rejected; {n_events} events"
    )
