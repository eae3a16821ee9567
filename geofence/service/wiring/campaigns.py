"""Wiring for the campaigns domain: the location-consent gate, the decision policy, the SMS keywords and
the campaign consumer of the zone-event log and the dispatcher loop (``bootstrap`` in
``geofence.service.runtime`` puts them together)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session

from campaigns.customers import location_consented_devices
from campaigns.decide import DecisionPolicy
from campaigns.dispatcher import DispatchStats, dispatch_due
from campaigns.keywords import DEFAULT_HELP, DEFAULT_OPT_IN, DEFAULT_OPT_OUT, KeywordConfig
from campaigns.legal_hours import DEFAULT_TABLE, load_legal_table
from campaigns.limits import GlobalCaps
from campaigns.outbox import waiting_count
from geofence.service import clock
from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy
from geofence.service.loops import Loop
from geofence.service.settings import Settings
from geofence.service.wakeup import OUTBOX_CHANNEL, notify

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

log = logging.getLogger(__name__)
CAMPAIGN_CONSUMER = "campaigns"


def location_consent_filter(session: Session, device_ids: Iterable[str]) -> set[str]:
    """The devices whose customer holds ``location_offers`` consent now: the location feed drops,
    unstored, the fixes of every other device."""
    return location_consented_devices(session, device_ids, at=clock.now())


def decision_policy(settings: Settings) -> DecisionPolicy:
    """The operator's caps and legal-hours table (a JSON file replaces the built-in table)."""
    rules = settings.campaigns
    table = DEFAULT_TABLE
    if rules.legal_hours_file is not None:
        try:
            table = load_legal_table(json.loads(rules.legal_hours_file.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ValueError(f"campaigns.legal_hours_file {rules.legal_hours_file}: {exc}") from exc
    return DecisionPolicy(
        global_caps=GlobalCaps(per_day=rules.max_offers_per_day, per_week=rules.max_offers_per_week),
        legal_table=table,
        max_event_age=timedelta(seconds=rules.max_event_age_s),
    )


def keyword_config(settings: Settings) -> KeywordConfig:
    """The inbound-SMS keywords (built once: normalising the lists on every SMS would be wasted work)."""
    conf = settings.sms_keywords
    return KeywordConfig(
        opt_out=tuple(conf.opt_out) if conf.opt_out is not None else DEFAULT_OPT_OUT,
        opt_in=tuple(conf.opt_in) if conf.opt_in is not None else DEFAULT_OPT_IN,
        help=tuple(conf.help) if conf.help is not None else DEFAULT_HELP,
        max_other_words=conf.max_other_words,
    )


def dispatch_job(runtime: Runtime) -> DispatchStats:
    """The dispatcher loop's body (``Loop("dispatch")``): claim due deliveries, send, record."""
    settings = runtime.settings
    stats = dispatch_due(
        runtime.engine,
        providers=runtime.providers,
        now=runtime.now,
        lease=timedelta(seconds=settings.scheduler.lease_s),
        max_attempts=settings.scheduler.max_attempts,
        pace=runtime.dispatch_pacer,
        metrics=runtime.metrics,
    )
    with Session(runtime.engine) as session:
        runtime.metrics.outbox_waiting(waiting_count(session))
    if stats.claimed:
        log.info("dispatch: claimed=%d %s", stats.claimed, stats.by_status)
    return stats


def campaign_consumer_loop(runtime: Runtime) -> Loop:
    """The log consumer ``campaigns``: each committed zone event decided once (idempotent by event id);
    what it writes wakes the dispatcher, here and (``NOTIFY``) in any other worker."""
    scheduler = runtime.settings.scheduler
    wakeups, engine = runtime.wakeups, runtime.engine
    threads = scheduler.consumer_threads if engine.dialect.name == "postgresql" else 1  # SQLite: one writer
    if runtime.nats is not None:  # the bus: a durable JetStream consumer shared by every worker
        from geofence.service.wiring.event_bus import stream_consumer_loop

        return stream_consumer_loop(
            runtime, Consumer(CAMPAIGN_CONSUMER, runtime.campaign_handler.handle), threads=threads,
            after_event=wakeups.outbox.set, after_pass=lambda: notify(engine, OUTBOX_CHANNEL),
        )
    runner = ConsumerRunner(
        engine, Consumer(CAMPAIGN_CONSUMER, runtime.campaign_handler.handle), now=runtime.now,
        threads=threads, after_event=wakeups.outbox.set, after_pass=lambda: notify(engine, OUTBOX_CHANNEL),
        retry=RetryPolicy(max_attempts=scheduler.consumer_max_attempts,
                          first_delay=timedelta(seconds=scheduler.consumer_retry_s)),
    )
    return Loop(f"consumer:{CAMPAIGN_CONSUMER}", runner.run_once, wakeups.events, scheduler.events_poll_s,
                role="worker")


def dispatch_loop(runtime: Runtime) -> Loop:
    """The dispatcher, woken by each decision (and ``NOTIFY``); its poll catches what becomes due later."""

    def dispatch() -> bool:
        dispatch_job(runtime)
        return False

    return Loop("dispatch", dispatch, runtime.wakeups.outbox, runtime.settings.scheduler.dispatch_every_s,
                role="worker")
