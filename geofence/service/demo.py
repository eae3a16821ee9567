"""The demo use case: the whole engine, on the embedded default, on a simulated clock.

``run_demo(workdir)`` resets a SQLite database under ``workdir``, loads fictitious demo stores placed
along two REAL GPS traces (IGN / LASTIG, CeCILL-C — see ``geofence/demo_data/ATTRIBUTION.md``),
defines two campaigns, creates three customers with explicit, proven consents, registers their
devices and replays the traces through the real ingest path (``runtime.geofence.ingest``,
the code ``POST /v1/locations`` calls). Zone events go through the real event log to the campaign
consumer (decisions, caps, outbox rows); the real dispatcher sends through the local outbox channel.
A STOP reply goes through the same use case as the Twilio webhook. It ends with a CRM export.

Why a simulated clock: the traces were recorded in 2018 and 2019, and every adapter reads the time
through ``geofence.service.clock.now``. For the demo's duration that function is replaced by the
replay's clock (each batch of fixes sets it to the batch's last fix time), so fix-age checks, send
windows, legal hours and expiry are evaluated at the time the trace was recorded.

- Lunch offer (push) on **walking** zones, Mon–Fri 12:00–14:00 store time: the Vincennes trace was
  recorded on Wednesday 2018-01-31 from 12:17 to 14:21 Paris time, a lunch-time walk, so it is replayed
  at its own time (no shift needed).
- After-work offer (SMS) on **driving** zones, Mon–Fri 17:30–18:30: the Sénart trace runs on Friday
  2019-07-12 from 17:26 to 19:03 Paris time.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from sqlalchemy import select
from sqlmodel import Session

from geofence.fixes import LocationFix
from geofence.service.demo_narration import DemoReport, Emit, Observer, store_time
from geofence.service.demo_scenario import (
    APP_VERSION,
    BATCH,
    CONSENT_EVIDENCE,
    CONSENT_WORDING,
    CUSTOMERS,
    STOP_SENDER,
    STORE_TZ,
    SimulatedClock,
    campaign_definitions,
    load_stores,
    load_trace,
    simulated_clock,
)
from geofence.service.settings import Settings

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

Wrap = Callable[[Sequence[Any], str], Iterable[Any]]


# --- steps ---------------------------------------------------------------------------------------


def demo_settings(workdir: Path) -> Settings:
    return Settings(
        env="local",
        database_url=f"sqlite:///{workdir}/demo.db",
        outbox_dir=workdir / "outbox",
        export_dir=workdir / "exports",
        channels=["outbox"],
        auth_required=False,
        migrate_on_start=False,
        scheduler={"enabled": False},  # the demo drives every job itself, on the simulated clock
        log={"level": "WARNING", "json_format": False},  # the demo narrates; job logs would repeat it
    )


def reset_workdir(workdir: Path) -> None:
    """Start from nothing: the demo database, outbox files and exports are removed."""
    for name in ("demo.db", "demo.db-wal", "demo.db-shm"):
        (workdir / name).unlink(missing_ok=True)
    for name in ("outbox", "exports"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)


def save_stores(runtime: Runtime, stores: list[dict[str, Any]], at: datetime) -> int:
    from zones.io import read_zones_csv

    lines = ["id,name,lat,lng,radius_m,store_id,tags,tz"]
    lines += [
        f'{z["id"]},"{s["name"]}",{z["lat"]},{z["lng"]},{z["radius_m"]},{s["id"]},{z["kind"]},{STORE_TZ}'
        for s in stores
        for z in s["zones"]
    ]
    zones, errors = read_zones_csv("\n".join(lines) + "\n")
    if errors:
        raise RuntimeError(f"demo stores: {errors}")
    runtime.geofence.save_zones(zones, at=at)
    return len(zones)


def save_campaigns(runtime: Runtime, at: datetime) -> None:
    from campaigns.model import parse_campaign
    from geofence.service.db import session_scope
    from geofence.service.tables.campaigns import CampaignRow

    with session_scope(runtime.engine) as session:
        for definition in campaign_definitions():
            campaign = parse_campaign(definition)
            session.add(
                CampaignRow(
                    id=campaign.id,
                    name=campaign.name,
                    status=campaign.status.value,
                    priority=campaign.priority,
                    definition=campaign.definition(),
                    starts_at=campaign.starts_at,
                    ends_at=campaign.ends_at,
                    created_at=at,
                    updated_at=at,
                )
            )


def save_customers(runtime: Runtime, at: datetime) -> dict[str, str]:
    """Customers, devices and consents with proof; returns customer id -> first name."""
    from campaigns.customers import CustomerInput, record_consent, register_device, upsert_customer
    from geofence.service.db import session_scope

    hash_key = runtime.settings.hash_key.get_secret_value()
    names: dict[str, str] = {}
    with session_scope(runtime.engine) as session:
        for c in CUSTOMERS:
            customer, _ = upsert_customer(
                session,
                CustomerInput(crm_id=c.crm_id, phone=c.phone, first_name=c.first_name, locale="fr",
                              tz=STORE_TZ, country="FR"),
                at=at, hash_key=hash_key,
            )  # fmt: skip
            register_device(session, device_id=c.device_id, platform=c.platform, at=at,
                            customer_id=customer.id, push_token=c.push_token,
                            app_version=APP_VERSION)  # fmt: skip
            for purpose in c.purposes:
                record_consent(
                    session, customer_id=customer.id, purpose=purpose, granted=True, source="app_screen",
                    at=at, wording=CONSENT_WORDING[purpose], wording_version="2026-01",
                    recorded_by="geofence demo", evidence=CONSENT_EVIDENCE,
                )  # fmt: skip
            names[customer.id] = c.first_name
    return names


def batches(fixes: Sequence[LocationFix], every: timedelta = BATCH) -> list[list[LocationFix]]:
    """Consecutive fixes grouped by simulated minute (what a phone's batched upload looks like)."""
    out: list[list[LocationFix]] = []
    start: datetime | None = None
    for fix in fixes:
        if start is None or fix.recorded_at >= start + every:
            out.append([])
            start = fix.recorded_at
        out[-1].append(fix)
    return out


def status_counts(runtime: Runtime, customer_id: str) -> dict[str, int]:
    from sqlalchemy import func

    from geofence.service.tables.campaigns import Delivery

    with Session(runtime.engine) as session:
        rows = session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.customer_id == customer_id)
            .group_by(Delivery.status)
        ).all()
    return {str(status): int(n) for status, n in rows}


def simulate_stop(runtime: Runtime, phone: str, at: datetime) -> tuple[int, str]:
    """A "STOP" reply through the use case the Twilio webhook calls; returns (cancelled, reply)."""
    from campaigns.inbound_sms import InboundSms, handle_inbound_sms
    from geofence.service.db import session_scope

    sms = InboundSms(message_sid=f"SMdemo{int(at.timestamp())}", from_number=phone, to_number=STOP_SENDER,
                     body="STOP")  # fmt: skip
    with session_scope(runtime.engine) as session:
        outcome = handle_inbound_sms(
            session,
            sms,
            at=at,
            hash_key=runtime.settings.hash_key.get_secret_value(),
            config=runtime.sms_keywords,
        )
    return outcome.cancelled, outcome.reply or ""


def _replay(runtime: Runtime, sim: SimulatedClock, fixes: list[LocationFix], *, label: str, wrap: Wrap,
            observer: Observer, after_batch: Callable[[datetime], None] | None = None) -> None:  # fmt: skip
    from geofence.service.wiring.campaigns import dispatch_job

    service = runtime.geofence
    consume = next(loop.work for loop in runtime.loops if loop.id == "consumer:campaigns")
    for chunk in wrap(batches(fixes), label):
        sim.set(chunk[0].recorded_at)  # timers due in a gap fire before the fixes after it, as live
        service.sweep(chunk[0].recorded_at)
        at = chunk[-1].recorded_at
        sim.set(at)
        service.ingest(chunk, at=at)  # events -> the log (with the presences)
        service.sweep(at)  # dwell timers and silence exits due now
        while consume():  # the worker's campaign consumer: decisions, outbox rows
            pass
        observer.look()
        if after_batch is not None:
            after_batch(at)
        dispatch_job(runtime)  # the worker's job body: claim due rows, send through the outbox channel
        observer.look()
    end = fixes[-1].recorded_at + timedelta(hours=1)  # let the trace's timers run out (silence exit)
    sim.set(end)
    service.sweep(end)
    observer.look()


def write_crm_export(runtime: Runtime, directory: Path, at: datetime) -> list[Path]:
    from campaigns.export import KIND_NAMES, plan_export
    from campaigns.export.pipeline import write_export

    plans = [plan_export(runtime.engine, kind, None, at=at, settle_s=0) for kind in KIND_NAMES]
    return [
        write_export(runtime.engine, plan, fmt, directory / f"{plan.kind.name}.{fmt}").path
        for plan in plans
        for fmt in ("csv", "ndjson")
    ]


def campaign_stats(runtime: Runtime, campaign_id: str) -> Any:
    from campaigns.export.stats_source import load_campaign_stats

    with Session(runtime.engine) as session:
        return load_campaign_stats(
            session, campaign_id, window=timedelta(hours=24), receipt_providers=frozenset()
        )


def _no_wrap(items: Sequence[Any], _label: str) -> Iterable[Any]:
    return items


def run_demo(workdir: Path, *, emit: Emit = print, wrap: Wrap = _no_wrap) -> DemoReport:
    """Run the whole demo in ``workdir`` (reset first) and narrate it through ``emit``."""
    from geofence.service.runtime import bootstrap

    started = time.perf_counter()
    workdir = workdir.resolve()
    reset_workdir(workdir)
    report = DemoReport(workdir=workdir)
    vincennes = load_trace("vincennes-2018-01-31-thinned.gpx", "demo-phone-camille")
    senart = load_trace("senart-2019-07-12.gpx", "demo-phone-karim")
    # Inès drives the same road 20 s behind Karim (a copy of the trace on her own device).
    lag = timedelta(seconds=20)
    ines = "demo-phone-ines"
    ines_fixes = [msgspec.structs.replace(p, device_id=ines, recorded_at=p.recorded_at + lag) for p in senart]
    setup_at = vincennes[0].recorded_at - timedelta(minutes=30)
    with simulated_clock(setup_at) as sim:
        runtime = bootstrap(demo_settings(workdir))
        for provider in runtime.providers.values():
            if hasattr(provider, "echo"):
                provider.echo = False  # the demo prints what was sent itself (masked)
        stores = load_stores()
        n_zones = save_stores(runtime, stores, setup_at)
        zone_names = {z["id"]: f"{s['name']} ({z['kind']})" for s in stores for z in s["zones"]}
        save_campaigns(runtime, setup_at)
        names = save_customers(runtime, setup_at)
        by_key = {v: k for k, v in names.items()}
        emit(f"Database {workdir / 'demo.db'} (reset). {n_zones} demo stores along the traces, 2 campaigns, "
             f"{len(names)} customers with recorded consents, devices registered.")  # fmt: skip
        for store in stores:
            for z in store["zones"]:
                emit(f"  store  {store['name']:<36} {z['kind']:<8} zone {z['id']} "
                     f"({z['lat']:.5f}, {z['lng']:.5f}, r={z['radius_m']} m)")  # fmt: skip
        emit("  (fictitious stores placed on the real traces; see geofence/demo_data/ATTRIBUTION.md)")
        emit("Lunch offer: push, walking zones, Mon-Fri 12:00-14:00. After-work offer: SMS, driving zones, "
             "Mon-Fri 17:30-18:30 (store time, Europe/Paris).")  # fmt: skip
        emit("Clock: simulated. The traces were recorded in 2018 and 2019; every component reads the time "
             "through geofence.service.clock, which the demo sets to each batch's last fix time, so send "
             "windows and legal hours apply at the time of day the trace was recorded.")  # fmt: skip
        observer = Observer(runtime, names, zone_names, emit, report)

        emit(f"\n1) Camille walks in Vincennes on {store_time(vincennes[0].recorded_at)} (Paris time): "
             f"the real trace, {len(vincennes)} fixes, replayed at its own time of day "
             "(lunch time).")  # fmt: skip
        _replay(runtime, sim, vincennes, label="Vincennes (walking)", wrap=wrap, observer=observer)

        karim_id = by_key["Karim"]
        stopped = False

        def maybe_stop(at: datetime) -> None:
            nonlocal stopped
            counts = status_counts(runtime, karim_id)
            if stopped or not counts.get("delivered", 0) + counts.get("sent", 0):
                return
            if not counts.get("pending", 0) + counts.get("deferred", 0):
                return
            stopped = True
            cancelled, reply = simulate_stop(runtime, CUSTOMERS[1].phone, at)
            report.stop_cancelled = cancelled
            report.stop_line = (f"{store_time(at)}  Karim replies STOP to {STOP_SENDER}: consent withdrawn, "
                                f"{cancelled} waiting message(s) cancelled; reply: {reply!r}")  # fmt: skip
            emit(f"  STOP   {report.stop_line}")

        fixes = sorted([*senart, *ines_fixes], key=lambda f: f.recorded_at)
        emit(f"\n2) Karim and Inès drive around Sénart on {store_time(senart[0].recorded_at)} (Paris time): "
             f"the real trace, {len(senart)} fixes each. Karim will reply STOP while his second offer "
             "waits.")  # fmt: skip
        _replay(runtime, sim, fixes, label="Sénart (driving)", wrap=wrap, observer=observer,
                after_batch=maybe_stop)  # fmt: skip
        report.fixes = len(vincennes) + len(fixes)

        end = sim.now() + timedelta(hours=1)
        sim.set(end)
        export_dir = workdir / "exports" / "crm"
        report.export_files = write_crm_export(runtime, export_dir, end)
        for cid in ("lunch-walk", "after-work-drive"):
            report.stats[cid] = campaign_stats(runtime, cid)
        runtime.engine.dispose()
    report.wall_s = time.perf_counter() - started
    emit("\nCampaign stats (visit window 24 h):")
    for cid, st in report.stats.items():
        rate = "-" if st.conversion_rate is None else f"{st.conversion_rate:.0%}"
        emit(f"  {cid:<17} eligible={st.eligible} sent={st.sent} delivered={st.delivered} "
             f"skipped={st.skipped} visits={st.visits} conversion={rate} "
             f"opt-outs after={st.opt_outs_after}")  # fmt: skip
    emit(f"\nCRM export (HubSpot-ready CSV + Segment NDJSON) written to {export_dir}/:")
    for path in report.export_files:
        emit(f"  {path.name:<20} {path.stat().st_size:>8} bytes")
    emit(f"Outbox channel files: {workdir / 'outbox'}/  —  done in {report.wall_s:.1f} s")
    return report
