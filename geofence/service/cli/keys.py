"""CLI: ``geofence keys create|revoke|list`` — API keys are created and revoked only here."""

from __future__ import annotations

from datetime import datetime

import typer

from geofence.service import apikeys, clock
from geofence.service.cli.base import app, console, fail, load_runtime
from geofence.service.db import session_scope

keys_app = typer.Typer(help="API keys (scopes: ingest, admin). The secret is shown once, at creation.")
app.add_typer(keys_app, name="keys")


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%dT%H:%MZ}" if at else "-"


@keys_app.command("create")
def create(
    name: str = typer.Argument(..., help="Who or what uses the key, e.g. 'android app' or 'crm sync'."),
    scope: list[str] = typer.Option(..., "--scope", "-s", help="ingest | admin (repeatable)."),
) -> None:
    """Create a key and print its secret ONCE (only a hash is stored)."""
    runtime = load_runtime()
    try:
        with session_scope(runtime.engine) as session:
            info, token = apikeys.create_api_key(session, name=name, scopes=set(scope), at=clock.now())
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"created key [bold]{info.id}[/bold] ({info.name}; scopes: {' '.join(info.scopes)})")
    console.print("secret (shown once; store it now, it cannot be recovered):")
    # plain print so the token is never wrapped or styled when copied or piped
    print(token)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key id (see `geofence keys list`).")) -> None:
    """Revoke a key; requests using it are refused from now on."""
    runtime = load_runtime()
    with session_scope(runtime.engine) as session:
        info = apikeys.revoke_api_key(session, key_id, at=clock.now())
    if info is None:
        raise fail(f"no key with id {key_id!r}")
    console.print(f"revoked key {info.id} ({info.name}) at {info.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


@keys_app.command("list")
def list_keys(
    all_keys: bool = typer.Option(False, "--all", help="Include revoked keys."),
) -> None:
    """List keys (ids, names, scopes, dates; never secrets)."""
    runtime = load_runtime()
    with session_scope(runtime.engine) as session:
        keys = apikeys.list_api_keys(session, include_revoked=all_keys)
    # one tab-separated line per key: never truncated by the terminal width, easy to grep/cut
    typer.echo("id\tscopes\tcreated\tlast_used\trevoked\tname")
    for k in keys:
        typer.echo(
            "\t".join(
                [
                    k.id, ",".join(k.scopes), _when(k.created_at), _when(k.last_used_at),
                    _when(k.revoked_at), k.name,
                ]
            )
        )
