"""CLI: ``geofence webhooks add|list|replay`` — the admin API's webhook endpoints from a terminal."""

from __future__ import annotations

from datetime import datetime

import typer
from sqlalchemy import select
from sqlmodel import Session, col

from geofence.service import clock
from geofence.service.cli.base import app, console, fail, load_runtime
from geofence.service.tables.webhooks import WebhookEndpointRow
from geofence.service.webhooks import FILTERS, register_endpoint, replay

webhooks_app = typer.Typer(help="Outbound webhook endpoints (Standard Webhooks). See docs/webhooks.md.")
app.add_typer(webhooks_app, name="webhooks")


@webhooks_app.command("add")
def add(
    url: str = typer.Argument(..., help="The receiver's http(s) URL."),
    event: list[str] = typer.Option(
        ..., "--event", "-e", help=f"Event type (repeatable): {', '.join(FILTERS)}."
    ),
    description: str = typer.Option("", help="Who receives it, e.g. 'CRM'."),
    zone: list[str] = typer.Option(
        [], "--zone", "-z", help="Only events naming this zone (repeatable): a store's own feed."
    ),
) -> None:
    """Register an endpoint and print its signing secret ONCE."""
    runtime = load_runtime()
    with Session(runtime.engine, expire_on_commit=False) as session:
        try:
            row, secret = register_endpoint(
                session, url, event, description=description,
                allow_private=runtime.settings.webhooks.allow_private_targets, at=clock.now(),
                zone_ids=zone,
            )
        except ValueError as exc:
            raise fail(str(exc)) from None
    console.print(f"created endpoint [bold]{row.id}[/bold] ({' '.join(row.event_types)})")
    console.print("signing secret (shown once; give it to the receiver):")
    print(secret)  # plain: never wrapped or styled when copied or piped


@webhooks_app.command("list")
def list_endpoints() -> None:
    """One tab-separated line per endpoint (never its secret)."""
    runtime = load_runtime()
    with Session(runtime.engine) as session:
        query = select(WebhookEndpointRow).order_by(col(WebhookEndpointRow.created_at))
        rows = session.execute(query).scalars()
        typer.echo("id\tevent_types\tdisabled\turl")
        for r in rows:
            typer.echo(f"{r.id}\t{','.join(r.event_types)}\t{r.disabled_reason or '-'}\t{r.url}")


@webhooks_app.command("replay")
def replay_endpoint(
    endpoint_id: str = typer.Argument(..., help="The endpoint id (see `geofence webhooks list`)."),
    since: datetime = typer.Option(..., help="Send again every event from this UTC time on."),
) -> None:
    """Send every event from ``--since`` on again, in order (the worker sends them)."""
    runtime = load_runtime()
    with Session(runtime.engine) as session:
        endpoint = session.get(WebhookEndpointRow, endpoint_id)
        if endpoint is None:
            raise fail(f"no webhook endpoint {endpoint_id!r}")
        at = since if since.tzinfo else since.replace(tzinfo=clock.now().tzinfo)
        due = replay(session, endpoint, at, now=clock.now())
        session.commit()
    console.print(f"{due} deliveries due for {endpoint_id}")
