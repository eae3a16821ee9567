"""The composition root: ``bootstrap(settings)`` builds every service of a process, typed, in one place.

The API process and the dispatcher process build the same ``Runtime``; only what they start differs
(each ``Job``'s and ``Loop``'s ``role``). Routes receive it through ``deps.RuntimeDep``, jobs as their
argument, the CLI from ``cli.base.load_runtime``; every field is typed, so a reader (and mypy) can
follow a fix from the route to the provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.engine import Engine

from campaigns.decide import DecisionPolicy
from campaigns.dispatcher import Pacer
from campaigns.handler import CampaignHandler
from campaigns.keywords import KeywordConfig
from campaigns.ports import CampaignMetrics, Clock
from campaigns.providers import build_providers
from campaigns.providers.base import NotificationProvider
from geofence.events import EventBus
from geofence.service import clock, event_retention, webhook_retention
from geofence.service import webhook_store_events as store_events
from geofence.service.db import create_schema, is_postgres, make_engine
from geofence.service.lazy_bridge import LazyBridge
from geofence.service.location_data import SqlLocationData
from geofence.service.logging import configure_logging
from geofence.service.loops import Loop
from geofence.service.metrics import PrometheusCampaignMetrics
from geofence.service.rate_limits import DatabaseRates, MemoryRates, RateStore, purge_rate_limits_job
from geofence.service.security import Principal, make_authenticator
from geofence.service.settings import Settings
from geofence.service.wakeup import Wakeups
from geofence.service.wiring import campaigns as campaign_jobs
from geofence.service.wiring import exports as export_jobs
from geofence.service.wiring import geofence as geofence_jobs
from geofence.service.wiring import orders as order_jobs
from geofence.service.wiring import webhooks as webhook_jobs
from geofence.service.wiring import zone_snapshot as zone_index_jobs
from geofence.service.wiring.geofence import GeofenceService
from geofence.service.wiring.zone_catalogue import zones_sync_loop

PURGE_RATE_LIMITS_EVERY_S = 600.0


@dataclass
class Job:
    """A periodic job: ``func(runtime)`` every ``every_s`` seconds. ``role`` says which process runs it."""

    id: str
    func: Callable[[Runtime], object]
    every_s: float
    role: str = "worker"  # "worker" (dispatcher process) | "api" | "any"


@dataclass(eq=False)
class Runtime:
    """Everything one process runs on. Plain (not frozen): tests swap a provider or the consent gate."""

    settings: Settings
    engine: Engine
    now: Clock
    bus: EventBus
    metrics: CampaignMetrics
    wakeups: Wakeups  # this process's signals: zone events, due deliveries, zone changes
    geofence: GeofenceService  # zone index, presence, ingest; writes the zone-event log
    location_data: SqlLocationData  # geofence's half of access requests and erasure
    decision_policy: DecisionPolicy
    campaign_handler: CampaignHandler  # the zone-event log's ``campaigns`` consumer (``loops``)
    export_intake: export_jobs.ExportIntakeRunner  # the log's ``crm_export`` consumer (loop, daily export)
    providers: dict[str, NotificationProvider]  # by channel: "push", "sms"
    dispatch_pacer: Pacer
    sms_keywords: KeywordConfig
    rates: RateStore  # request-rate buckets: the database's (shared by every process) or this process's
    authenticate: Callable[[Request, str], Principal]
    jobs: list[Job] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)  # woken by commits (``geofence.service.loops``)
    nats: LazyBridge | None = None  # GEOFENCE_BUS set: this process's NATS connection, opened on first use


def bootstrap(settings: Settings, engine: Engine | None = None) -> Runtime:
    """Build the process's services from ``settings`` (and ``engine``, else one from the settings)."""
    configure_logging(settings)
    engine = engine or make_engine(settings.database_url)
    if not is_postgres(engine):
        create_schema(engine)
    elif settings.migrate_on_start:
        # PostgreSQL runs the Alembic migrations (advisory-locked, so several workers may start at once).
        from geofence.service.migrations import migrate

        migrate(engine)
    bus = EventBus()  # in-process observers of committed events (dry runs, tests); consumers read the log
    wakeups = Wakeups()
    metrics = PrometheusCampaignMetrics()
    policy = campaign_jobs.decision_policy(settings)
    handler = CampaignHandler(engine, now=clock.now, policy=policy, metrics=metrics)
    rates: RateStore = DatabaseRates() if settings.limits.store == "database" else MemoryRates()
    runtime = Runtime(
        settings=settings,
        engine=engine,
        now=clock.now,
        bus=bus,
        metrics=metrics,
        wakeups=wakeups,
        geofence=GeofenceService(
            settings, engine, bus=bus, wakeups=wakeups, location_consent=campaign_jobs.location_consent_filter
        ),
        location_data=SqlLocationData(),
        decision_policy=policy,
        campaign_handler=handler,
        export_intake=export_jobs.export_intake(settings, engine, now=clock.now),
        # synchronous, as the SDKs are: the dispatcher calls them from scheduler threads, never from an
        # async route, so firebase-admin and twilio never block the event loop
        providers=build_providers(settings, now=clock.now),
        dispatch_pacer=Pacer(rates={str(k): float(v) for k, v in settings.campaigns.channel_rates.items()}),
        sms_keywords=campaign_jobs.keyword_config(settings),
        rates=rates,
        authenticate=make_authenticator(settings, engine, rates),
        nats=LazyBridge(settings.bus, name="geofence") if settings.bus else None,
    )
    if settings.bus:  # the scaled path: API processes publish, `geofence ingest-worker`s ingest
        from geofence.service.bus import publisher_for

        runtime.geofence.publisher = publisher_for(settings, runtime.geofence.ingestor.limits)
    runtime.jobs = jobs_for(settings)
    runtime.loops = loops_for(runtime)
    return runtime


def jobs_for(settings: Settings) -> list[Job]:
    """The periodic jobs: presence timers, purges (raw fixes, answers, rate limits, store-side events,
    webhook messages), daily CRM export, zone index upkeep."""
    presence, scheduler = geofence_jobs, settings.scheduler
    jobs = [Job("geofence.sweep", presence.sweep_job, scheduler.sweep_every_s, role="worker")]
    if settings.ingest.fix_retention_s > 0:
        jobs.append(Job("geofence.purge_fixes", presence.purge_fixes_job, presence.PURGE_EVERY_S))
    jobs.append(Job("geofence.purge_answers", presence.purge_answers_job, presence.PURGE_ANSWERS_EVERY_S,
                    role="worker"))
    jobs.append(Job("daily_export", export_jobs.daily_export, export_jobs.DAILY_S, role="worker"))
    jobs.append(Job("purge_rate_limits", purge_rate_limits_job, PURGE_RATE_LIMITS_EVERY_S, role="worker"))
    if settings.ingest.zone_event_retention_days > 0:
        jobs.append(Job("geofence.purge_zone_events", event_retention.purge_zone_events_job,
                        event_retention.PURGE_EVERY_S, role="worker"))
    jobs.append(Job("webhooks.purge_store_events", store_events.purge_store_events_job,
                    store_events.PURGE_EVERY_S, role="worker"))
    if settings.webhooks.delivery_retention_days > 0:
        jobs.append(Job("webhooks.purge_deliveries", webhook_retention.purge_webhook_deliveries_job,
                        webhook_retention.PURGE_EVERY_S, role="worker"))
    zone_index = settings.zone_index
    snap = zone_index_jobs
    jobs.append(Job("geofence.zones_compact", snap.compact_zones_job, zone_index.compact_check_s, role="any"))
    if zone_index.snapshot_path is not None:
        jobs.append(Job("geofence.zones_snapshot", snap.snapshot_zones_job, zone_index.snapshot_every_s))
    return jobs


def loops_for(runtime: Runtime) -> list[Loop]:
    """The loops woken by the commits that give them work: zone sync (every process), the campaign
    consumer of the zone-event log, the dispatcher, the webhook consumer and sender, the orders' and the
    CRM export's consumers (worker); with the bus, the relay of the log to the events stream."""
    loops = [
        zones_sync_loop(runtime.geofence, poll_s=runtime.settings.scheduler.config_poll_s),
        campaign_jobs.campaign_consumer_loop(runtime),
        campaign_jobs.dispatch_loop(runtime),
        *webhook_jobs.webhook_loops(runtime),
        *order_jobs.order_loops(runtime),
        export_jobs.export_intake_loop(runtime),
    ]
    if runtime.nats is not None:  # the bus: the database log is relayed to the events stream
        from geofence.service.wiring.event_bus import relay_loop

        loops.append(relay_loop(runtime))
    return loops
