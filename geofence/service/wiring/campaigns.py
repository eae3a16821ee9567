"""Wiring for the campaigns domain: services, subscribers and jobs registered on the runtime."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from geofence.service.event_log import Consumer, ConsumerRunner, Handle, RetryPolicy
from geofence.service.loops import Loop
from geofence.service.runtime import Runtime
from geofence.service.wakeup import OUTBOX_CHANNEL, notify

CAMPAIGN_CONSUMER = "campaigns"


def setup(runtime: Runtime) -> None:
    """Register this domain's services on the runtime."""
    __import__("campaigns.consent_wiring", fromlist=["setup_consent"]).setup_consent(runtime)
    setup_campaigns(runtime)


def setup_campaigns(runtime: Runtime) -> None:
    """The campaign consumer of the zone-event log (decide + write deliveries) and the dispatcher loop.

    ``runtime.services["decision_policy"]`` (a ``campaigns.decide.DecisionPolicy``) may be set by an
    operator hook before this runs to change the global caps or the legal-hours table.
    """
    from campaigns.dispatcher import dispatch_job
    from campaigns.handler import CampaignHandler
    from geofence.service import clock

    policy = runtime.services.setdefault("decision_policy", decision_policy(runtime.settings))
    runtime.services.setdefault("channel_rates", dict(runtime.settings.campaigns.channel_rates))
    handler = CampaignHandler(
        runtime.engine, now=clock.now, policy=policy, zone_resolver=runtime.services.get("zone_info")
    )
    runtime.services["campaign_handler"] = handler
    runtime.add_loop(campaign_consumer_loop(runtime, handler.handle))

    def dispatch() -> bool:
        dispatch_job(runtime)
        return False

    runtime.add_loop(Loop("dispatch", dispatch, runtime.wakeups.outbox,
                          runtime.settings.scheduler.dispatch_every_s, role="worker"))


def campaign_consumer_loop(runtime: Runtime, handle: Handle) -> Loop:
    """The log consumer ``campaigns``: each committed zone event decided once (idempotent by event id);
    what it writes wakes the dispatcher, here and (``NOTIFY``) in any other worker."""
    from geofence.service import clock

    scheduler = runtime.settings.scheduler
    wakeups, engine = runtime.wakeups, runtime.engine

    runner = ConsumerRunner(
        engine, Consumer(CAMPAIGN_CONSUMER, handle), now=clock.now, threads=scheduler.consumer_threads,
        after_event=wakeups.outbox.set, after_pass=lambda: notify(engine, OUTBOX_CHANNEL),
        retry=RetryPolicy(max_attempts=scheduler.consumer_max_attempts,
                          first_delay=timedelta(seconds=scheduler.consumer_retry_s)),
    )
    return Loop(f"consumer:{CAMPAIGN_CONSUMER}", runner.run_once, wakeups.events, scheduler.events_poll_s,
                role="worker")


def decision_policy(settings: Any) -> Any:
    """The operator's caps and legal-hours table (a JSON file replaces the built-in table)."""
    import json

    from campaigns.decide import DecisionPolicy
    from campaigns.legal_hours import DEFAULT_TABLE, load_legal_table
    from campaigns.limits import GlobalCaps

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
