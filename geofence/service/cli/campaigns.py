"""CLI: ``geofence campaigns dry-run CAMPAIGN_ID [--trace FILE | --since ... --until ...]``.

Replays recorded zone events (or the events a GPS trace produces) through one campaign and prints who
would have received what and when, and why the others would not. Nothing is written to the database:
a trace is run through the presence engine in a scratch in-memory database holding a copy of the zones.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select
from sqlmodel import Session

from geofence.events import EventBus, ZoneEvent
from geofence.service import clock
from geofence.service.cli.base import app, console, err_console, fail
from geofence.service.db import create_schema, make_engine
from geofence.service.settings import Settings, get_settings

campaigns_app = typer.Typer(help="Campaigns: dry runs.", no_args_is_help=True)
app.add_typer(campaigns_app, name="campaigns")


def _instant(text: str | None, name: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        if text.endswith(("h", "d")) and text[:-1].isdigit():  # relative: "24h", "7d"
            amount = int(text[:-1])
            return clock.now() - (timedelta(hours=amount) if text[-1] == "h" else timedelta(days=amount))
        raise fail(f"--{name}: expected an ISO date-time such as 2026-11-23T00:00:00Z, or 24h / 7d") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def events_from_trace(settings: Settings, engine: Any, trace: Path, *, device_id: str) -> list[ZoneEvent]:
    """Run a CSV/GPX trace through the presence engine in a scratch in-memory database (zones copied
    from the real one) and return the zone events it produces, timers included."""
    from geofence.service.runtime import bootstrap
    from geofence.service.tables.zones import ZoneRow
    from geofence.traces import read_trace

    try:
        text = trace.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise fail(f"{trace}: not UTF-8 (byte {exc.start})") from None
    fixes, errors = read_trace(text, name=trace.name, device_id=device_id)
    for problem in errors:
        err_console.print(f"[yellow]{trace.name} line {problem.line}:[/yellow] {problem.reason}")
    if not fixes:
        raise fail(f"{trace}: no usable fix")
    fixes.sort(key=lambda f: f.recorded_at)
    scratch_settings = settings.model_copy(update={"database_url": "sqlite://"})
    scratch_engine = make_engine("sqlite://")
    create_schema(scratch_engine)
    with Session(engine) as real, Session(scratch_engine) as copy:
        for row in real.execute(select(ZoneRow).where(ZoneRow.deleted_at.is_(None))).scalars():  # type: ignore[union-attr]
            copy.merge(ZoneRow(**row.model_dump()))
        copy.commit()
    scratch = bootstrap(scratch_settings, scratch_engine)
    service = scratch.geofence
    service.bus = EventBus()  # nothing subscribed: the scratch run writes no deliveries anywhere
    service.location_consent = None  # consent is judged by the dry run itself
    service.sync_zones()
    events: list[ZoneEvent] = []
    sweep_every = timedelta(seconds=settings.scheduler.sweep_every_s)
    for _, fired in service.replay(fixes, sweep_every=sweep_every):  # as live, timers included
        events.extend(fired)
    scratch_engine.dispose()
    return events


@campaigns_app.command("dry-run")
def dry_run_command(
    campaign_id: str = typer.Argument(..., help="The campaign to evaluate (any status)."),
    trace: Path | None = typer.Option(
        None,
        exists=True,
        dir_okay=False,
        readable=True,
        help="CSV or GPX trace to replay instead of recorded events.",
    ),
    device_id: str = typer.Option(
        "replay",
        help="Device id for the trace (use a registered device to evaluate its customer's consent and caps).",
    ),
    since: str | None = typer.Option(None, help="Recorded events from (ISO date-time, or 24h / 7d ago)."),
    until: str | None = typer.Option(None, help="Recorded events before (ISO date-time)."),
    limit: int = typer.Option(10_000, min=1, max=1_000_000, help="At most this many recorded events."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Who would have received what and when, and why the others would not (writes nothing)."""
    from campaigns.dry_run import campaign_zone_ids, dry_run_in_db, recorded_events
    from campaigns.model import CampaignInvalid, parse_campaign
    from geofence.service.tables.campaigns import CampaignRow

    if trace is not None and (since or until):
        raise fail("give either --trace or --since/--until, not both")
    settings = get_settings()
    engine = make_engine(settings.database_url)
    create_schema(engine)
    with Session(engine) as session:
        row = session.get(CampaignRow, campaign_id)
        if row is None:
            raise fail(f"campaign {campaign_id!r} not found")
        try:
            campaign = parse_campaign({**row.definition, "id": row.id, "status": row.status})
        except CampaignInvalid as exc:
            raise fail(f"campaign {campaign_id!r} is not valid: {exc}") from None
        if trace is not None:
            events = events_from_trace(settings, engine, trace, device_id=device_id)
        else:
            events = recorded_events(
                session,
                since=_instant(since, "since"),
                until=_instant(until, "until"),
                limit=limit,
                zone_ids=campaign_zone_ids(session, campaign),
                kinds=campaign.trigger.kinds,
            )
        report = dry_run_in_db(session, campaign, events)
        session.rollback()
    if as_json:
        console.print_json(json.dumps(report.as_json()))
        return
    for r in report.rows:
        when = r.send_at.isoformat() if r.send_at else "-"
        console.print(
            f"{r.event_at.isoformat()}  {r.outcome:<5} {r.channel or '-':<5} at={when}  zone={r.zone_id}  "
            f"device={r.device_id}  customer={r.customer_id or '-'}  reason={r.reason}",
            markup=False,
            highlight=False,
        )
    summary = report.as_json(limit=0)
    console.print(
        f"{summary['events']} events through {campaign_id}: {summary['outcomes']}; "
        f"{summary['recipients']} recipients; skipped because: {summary['skip_reasons']}",
        markup=False,
        highlight=False,
    )
