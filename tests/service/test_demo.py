"""``geofence demo`` end to end: real traces through ingest, campaigns, outbox, STOP and the export."""

from __future__ import annotations

import csv
import json

import pytest

from geofence.service import clock
from geofence.service.demo import batches
from geofence.service.demo_scenario import load_stores, load_trace

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from geofence.service.demo import run_demo

    lines: list[str] = []
    workdir = tmp_path_factory.mktemp("demo")
    report = run_demo(workdir, emit=lines.append)
    return report, lines


def test_demo_produces_zone_events_decisions_and_sent_offers(demo_run):
    report, lines = demo_run
    assert len(report.zone_events) > 0
    assert any(" ENTER " in e for e in report.zone_events)
    assert report.sent, "at least one offer went out through the outbox channel"
    assert any(line.startswith("SMS") and "to +33***42" in line for line in report.sent)  # masked number
    assert not any("+33612345642" in line for line in lines)  # never a number in clear
    assert any("SKIP" in d and "no_consent" in d for d in report.decisions)  # Inès, without SMS consent


def test_demo_stop_cancels_the_waiting_offer(demo_run):
    report, lines = demo_run
    assert report.stop_cancelled >= 1
    assert any("cancel" in line and "consent_withdrawn" in line for line in lines)


def test_demo_writes_a_non_empty_crm_export(demo_run):
    report, _ = demo_run
    names = {p.name for p in report.export_files}
    assert {
        "customers.csv",
        "customers.ndjson",
        "zone_events.ndjson",
        "deliveries.ndjson",
        "opt_outs.csv",
    } <= names
    assert all(p.stat().st_size > 0 for p in report.export_files)
    text = report.workdir.joinpath("exports/crm/customers.csv").read_text()
    contacts = list(csv.DictReader(text.splitlines()))
    assert {c["crm_id"] for c in contacts} == {"CRM-1001", "CRM-1002", "CRM-1003"}
    karim = next(c for c in contacts if c["crm_id"] == "CRM-1002")
    assert karim["consent_sms_marketing"] == "false"  # the STOP is in the CRM too
    lines = report.workdir.joinpath("exports/crm/deliveries.ndjson").read_text().splitlines()
    events = [json.loads(x) for x in lines]
    assert "Offer Sent" in {e["event"] for e in events}


def test_demo_runs_well_under_a_minute_and_restores_the_clock(demo_run):
    report, _ = demo_run
    assert report.wall_s < 60
    assert clock.now().year >= 2026  # the simulated clock is gone


def test_demo_stores_lie_on_the_traces():
    import math

    fixes = load_trace("senart-2019-07-12.gpx", "d") + load_trace("vincennes-2018-01-31-thinned.gpx", "d")
    for store in load_stores():
        for z in store["zones"]:
            nearest = min(
                math.hypot(
                    (f.lat - z["lat"]) * 111_320, (f.lng - z["lng"]) * 111_320 * math.cos(math.radians(f.lat))
                )
                for f in fixes
            )
            assert nearest < z["radius_m"], store["id"]


def test_batches_group_fixes_by_simulated_minute():
    fixes = load_trace("senart-2019-07-12.gpx", "d")
    groups = batches(fixes)
    assert sum(len(g) for g in groups) == len(fixes)
    assert all((g[-1].recorded_at - g[0].recorded_at).total_seconds() < 60 for g in groups)
