"""CLI: ``geofence replay TRACE`` — feed a recorded CSV or GPX trace through the ingest path.

The replay's clock is the trace's, and it does what a live deployment does with the same fixes
(``geofence.traces.live_schedule``): each fix is ingested at its own time, as a device posting each fix
as recorded, and the presence sweep runs every ``--sweep-every-s`` of trace time (the scheduler's
setting by default), so dwell-by-timer and silence exits happen inside the trace's gaps as they would
live.
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
    batch: int = typer.Option(
        1, min=1, max=1000,
        help="Fixes per ingest call, at most (recorded within one sweep interval). 1 = each fix posted as "
             "recorded; more is faster, and may move a silence exit by less than a heartbeat (60 s).",
    ),
    sweep_every_s: float | None = typer.Option(
        None, min=1.0, help="Sweep interval in trace time (default: the scheduler's sweep_every_s)."
    ),
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
    sweep_every = timedelta(seconds=sweep_every_s or runtime.settings.scheduler.sweep_every_s)
    counts = {"accepted": 0, "duplicate": 0, "rejected": 0}
    n_events = 0
    steps = service.replay(fixes, sweep_every=sweep_every, batch=batch)
    for outcome, events in progress(steps, total=None, label=f"replaying {trace.name}"):
        if outcome is not None:
            for r in outcome.results:
                counts[r.status] += 1
        for event in events:
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
