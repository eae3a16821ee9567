"""``geofence export``: one kind to a file or stdout with a cursor, and ``all`` into a directory."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from geofence.service.db import create_schema, make_engine
from geofence.service.tables.customers import Customer
from geofence.service.tables.presence import ZoneEventRow

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@pytest.fixture
def cli_db(monkeypatch, tmp_path):
    from geofence.service.settings import get_settings

    url = f"sqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("GEOFENCE_DATABASE_URL", url)
    monkeypatch.setenv("GEOFENCE_SCHEDULER__ENABLED", "false")
    monkeypatch.setenv("GEOFENCE_EXPORT_DIR", str(tmp_path / "exports"))
    get_settings.cache_clear()
    engine = make_engine(url)
    create_schema(engine)
    with Session(engine) as s:
        s.add(Customer(id="c1", crm_id="HS-1", phone_e164="+33612345678", created_at=T0))
        s.add(ZoneEventRow(id="e1", zone_id="z1", customer_id="c1", kind="enter", at=T0, visit_id="v1",
                           reason="inside", recorded_at=T0))  # fmt: skip
        s.commit()
    yield tmp_path
    engine.dispose()
    get_settings.cache_clear()


def _run(*args: str):
    from geofence.service.cli.base import app

    return CliRunner().invoke(app, ["export", *args])


def test_export_one_kind_to_a_file_then_nothing_new_with_the_cursor(cli_db):
    out = cli_db / "customers.csv"
    result = _run("customers", "--format", "csv", "--out", str(out))
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["crm_id"] for r in rows] == ["HS-1"]
    cursor = result.output.split("next cursor:")[1].split()[0]
    again = _run("customers", "--since", cursor)  # stdout
    assert again.exit_code == 0, again.output
    assert any(line.startswith("crm_id,") for line in again.output.splitlines())
    assert "HS-1" not in again.output


def test_export_ndjson_to_stdout(cli_db):
    result = _run("zone_events", "-f", "ndjson")
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.output.splitlines() if x.startswith("{")]
    assert json.loads(line)["event"] == "Zone Entered"


def test_export_all_writes_every_kind_in_both_formats(cli_db):
    result = _run("all", "--dir", str(cli_db / "all"))
    assert result.exit_code == 0, result.output
    names = sorted(p.name.split("-")[0] + "." + p.suffix[1:] for p in (cli_db / "all").iterdir())
    assert names == sorted(f"{k}.{f}" for k in ("customers", "consents", "opt_outs", "zone_events",
                                                "deliveries") for f in ("csv", "ndjson"))  # fmt: skip
    incremental = _run("all", "--dir", str(cli_db / "inc"), "--incremental", "--settle-s", "0")
    assert incremental.exit_code == 0 and "customers" in incremental.output
    assert "nothing new" in _run("all", "--dir", str(cli_db / "inc"), "--incremental").output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("passwords",), "unknown export"),
        (("customers", "--since", "garbage"), "malformed cursor"),
        (("customers", "--format", "xml"), "--format"),
        (("all",), "--dir"),
    ],
)
def test_bad_arguments_fail_with_a_message(cli_db, args, message):
    result = _run(*args)
    assert result.exit_code == 2
    assert message in result.output
