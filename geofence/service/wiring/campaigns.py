"""Wiring for the campaigns domain: services, subscribers and jobs registered on the runtime."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from campaigns.customers import location_consented_devices
from campaigns.dispatcher import DispatchStats, Pacer, dispatch_due
from campaigns.outbox import waiting_count
from geofence.service import clock
from geofence.service.metrics import PrometheusCampaignMetrics
from geofence.service.runtime import Job, Runtime

log = logging.getLogger(__name__)


def setup(runtime: Runtime) -> None:
    """Register this domain's services on the runtime."""
    setup_consent(runtime)
    setup_campaigns(runtime)


def setup_consent(runtime: Runtime) -> None:
    """``location_consent_filter(session, device_ids) -> set[str]``: the devices whose customer holds
    ``location_offers`` consent now. The location feed drops, unstored, the fixes of every other device."""

    def location_consent_filter(session: Session, device_ids: Iterable[str]) -> set[str]:
        return location_consented_devices(session, device_ids, at=clock.now())

    runtime.services["location_consent_filter"] = location_consent_filter


def setup_campaigns(runtime: Runtime) -> None:
    """The zone-event subscriber (decide + write deliveries) and the outbox dispatcher job.

    ``runtime.services["decision_policy"]`` (a ``campaigns.decide.DecisionPolicy``) may be set by an
    operator hook before this runs to change the global caps or the legal-hours table.
    """
    from campaigns.handler import CampaignHandler

    policy = runtime.services.setdefault("decision_policy", decision_policy(runtime.settings))
    runtime.services.setdefault("channel_rates", dict(runtime.settings.campaigns.channel_rates))
    handler = CampaignHandler(
        runtime.engine, now=clock.now, policy=policy, zone_resolver=runtime.services.get("zone_info"),
        metrics=PrometheusCampaignMetrics(),
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


def dispatch_job(runtime: Any) -> DispatchStats:
    """The APScheduler job body (``Job(id="dispatch")``)."""
    settings = runtime.settings
    pacer = runtime.services.setdefault("dispatch_pacer", Pacer(rates=_rates(runtime)))
    metrics = PrometheusCampaignMetrics()
    stats = dispatch_due(
        runtime.engine,
        providers=runtime.services.get("providers", {}),
        now=clock.now,
        lease=timedelta(seconds=settings.scheduler.lease_s),
        max_attempts=settings.scheduler.max_attempts,
        pace=pacer,
        metrics=metrics,
    )
    with Session(runtime.engine) as session:
        metrics.outbox_waiting(waiting_count(session))
    if stats.claimed:
        log.info("dispatch: claimed=%d %s", stats.claimed, stats.by_status)
    return stats


def _rates(runtime: Any) -> dict[str, float]:
    """Messages per second per sender, from ``runtime.services["channel_rates"]`` if registered."""
    rates = runtime.services.get("channel_rates") or {}
    return {str(k): float(v) for k, v in dict(rates).items()}
