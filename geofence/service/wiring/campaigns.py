"""Wiring for the campaigns domain: services, subscribers and jobs registered on the runtime."""

from __future__ import annotations

from typing import Any

from geofence.service.runtime import Job, Runtime


def setup(runtime: Runtime) -> None:
    """Register this domain's services on the runtime."""
    __import__("campaigns.consent_wiring", fromlist=["setup_consent"]).setup_consent(runtime)
    setup_campaigns(runtime)


def setup_campaigns(runtime: Runtime) -> None:
    """The zone-event subscriber (decide + write deliveries) and the outbox dispatcher job.

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
    runtime.bus.subscribe(handler)
    runtime.add_job(
        Job(
            id="dispatch",
            func=dispatch_job,
            every_s=runtime.settings.scheduler.dispatch_every_s,
            role="worker",
        )
    )


def decision_policy(settings: Any) -> Any:
    """The operator's caps and legal-hours table (a JSON file replaces the built-in table)."""
    import json
    from datetime import timedelta

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
