"""`geofence keys ...`: the secret is printed once, lists never show it, revocation takes effect."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from geofence.service import apikeys, clock
from geofence.service.cli import app
from geofence.service.db import make_engine, session_scope
from geofence.service.settings import get_settings

TOKEN = re.compile(r"gfk_[0-9a-f]{32}_[0-9a-f]{64}")


@pytest.fixture
def cli_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("GEOFENCE_DATABASE_URL", url)
    monkeypatch.setenv("GEOFENCE_SCHEDULER__ENABLED", "false")
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_create_prints_the_secret_once_and_it_authenticates(cli_db):
    runner = CliRunner()
    created = runner.invoke(app, ["keys", "create", "android app", "--scope", "ingest"])
    assert created.exit_code == 0, created.output
    (token,) = TOKEN.findall(created.output)
    engine = make_engine(cli_db)
    with session_scope(engine) as s:
        assert apikeys.verify_api_key(s, token, at=clock.now()).scopes == {"ingest"}
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0
    assert "android" in listed.output and token[-64:] not in listed.output and "gfk_" not in listed.output


def test_revoke_then_the_key_is_refused_and_hidden_from_the_default_list(cli_db):
    runner = CliRunner()
    out = runner.invoke(app, ["keys", "create", "crm", "--scope", "admin"]).output
    (token,) = TOKEN.findall(out)
    key_id = token.split("_")[1]
    revoked = runner.invoke(app, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    with session_scope(make_engine(cli_db)) as s:
        assert apikeys.verify_api_key(s, token, at=clock.now()) is None
    assert key_id not in runner.invoke(app, ["keys", "list"]).output
    assert key_id in runner.invoke(app, ["keys", "list", "--all"]).output


def test_bad_scope_and_unknown_id_are_clear_errors(cli_db):
    runner = CliRunner()
    bad = runner.invoke(app, ["keys", "create", "x", "--scope", "root"])
    assert bad.exit_code == 2 and "scopes" in bad.output
    unknown = runner.invoke(app, ["keys", "revoke", "nope"])
    assert unknown.exit_code == 2 and "no key" in unknown.output
