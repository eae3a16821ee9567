"""Wiring for the campaigns domain: services, subscribers and jobs registered on the runtime."""

from __future__ import annotations

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
    from campaigns.decide import DecisionPolicy
    from campaigns.dispatcher import dispatch_job
    from campaigns.handler import CampaignHandler
    from geofence.service import clock

    policy = runtime.services.setdefault("decision_policy", DecisionPolicy())
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
