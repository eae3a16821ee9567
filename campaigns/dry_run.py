"""Dry run: replay recorded zone events (or a trace's events) through ONE campaign, writing nothing.

Answers "who would have received what, when, and why not the others". Each event is decided at its
own time (the replay's clock), with the consent ledger as it stood then; offers the replay itself
would have made count against the caps of later events (a simulated history per customer), so a
cap of one per day shows as such. A draft or paused campaign is evaluated as if it were active.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from campaigns.decide import DecisionPolicy, Defer, Recipient, Send, decide
from campaigns.limits import PastDelivery
from campaigns.model import Campaign, CampaignStatus, ZoneInfo
from campaigns.render import render_for_event
from geofence.events import ZoneEvent


@dataclass(frozen=True, slots=True)
class DryRunRow:
    event_id: str
    event_at: datetime
    zone_id: str
    device_id: str | None
    customer_id: str | None
    outcome: str  # send | defer | skip
    reason: str
    channel: str | None = None
    send_at: datetime | None = None
    title: str | None = None
    body: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_at": self.event_at.isoformat(),
            "zone_id": self.zone_id,
            "device_id": self.device_id,
            "customer_id": self.customer_id,
            "outcome": self.outcome,
            "reason": self.reason,
            "channel": self.channel,
            "send_at": self.send_at.isoformat() if self.send_at else None,
            "title": self.title,
            "body": self.body,
        }


@dataclass
class DryRunReport:
    campaign_id: str
    rows: list[DryRunRow] = field(default_factory=list)

    @property
    def outcomes(self) -> Counter[str]:
        return Counter(r.outcome for r in self.rows)

    @property
    def reasons(self) -> Counter[str]:
        return Counter(r.reason for r in self.rows if r.outcome == "skip")

    def recipients(self) -> set[str]:
        return {r.customer_id for r in self.rows if r.outcome != "skip" and r.customer_id}

    def as_json(self, *, limit: int | None = None) -> dict[str, Any]:
        rows = self.rows if limit is None else self.rows[:limit]
        return {
            "campaign_id": self.campaign_id,
            "events": len(self.rows),
            "outcomes": dict(self.outcomes),
            "skip_reasons": dict(self.reasons.most_common()),
            "recipients": len(self.recipients()),
            "rows": [r.as_json() for r in rows],
            "truncated": limit is not None and len(self.rows) > limit,
        }


def dry_run(
    campaign: Campaign,
    events: Iterable[ZoneEvent],
    *,
    zone_for: Callable[[str], ZoneInfo | None],
    recipient_for: Callable[[ZoneEvent], Recipient | None],
    history_for: Callable[[str, datetime], list[PastDelivery]] | None = None,
    policy: DecisionPolicy | None = None,
) -> DryRunReport:
    """Decide every event (in time order) for ``campaign``; nothing is written.

    ``history_for(customer_id, at)`` supplies real past deliveries (default: none, i.e. the replay
    starts from a clean slate); the replay's own would-be offers are added on top.
    """
    policy = policy or DecisionPolicy()
    as_active = campaign.model_copy(update={"status": CampaignStatus.ACTIVE})
    report = DryRunReport(campaign.id)
    simulated: dict[str, list[PastDelivery]] = {}
    for event in sorted(events, key=lambda e: (e.at, e.id)):
        # Every row of this event starts the same way (the zone is looked up by the event's zone id).
        row = partial(DryRunRow, event.id, event.at, event.zone_id, event.device_id)
        zone = zone_for(event.zone_id)
        if zone is None:
            report.rows.append(row(None, "skip", "unknown_zone"))
            continue
        if not as_active.trigger.matches(event.kind, zone.id, zone.tags):
            continue  # not this campaign's trigger: not part of its audience at all
        recipient = recipient_for(event)
        customer_id = recipient.customer_id if recipient else None
        history: list[PastDelivery] = []
        if recipient is not None:
            if history_for is not None:
                history.extend(history_for(recipient.customer_id, event.at))
            history.extend(simulated.get(recipient.customer_id, []))
        decision = decide(event, as_active, zone, recipient, history, event.at, policy)
        if isinstance(decision, Send | Defer) and recipient is not None:
            simulated.setdefault(recipient.customer_id, []).append(
                PastDelivery(campaign.id, zone.id, event.visit_id, decision.channel, decision.at)
            )
            try:
                message = render_for_event(as_active, zone, event, recipient, decision)
            except ValueError as exc:
                report.rows.append(row(customer_id, "skip", f"render_error:{exc}", decision.channel))
                continue
            report.rows.append(
                row(
                    customer_id,
                    decision.outcome,
                    decision.reason,
                    decision.channel,
                    decision.at,
                    message.title,
                    message.body,
                )
            )
        else:
            report.rows.append(row(customer_id, "skip", decision.reason, getattr(decision, "channel", None)))
    return report


def recorded_events(
    session: Any,
    *,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    zone_ids: Iterable[str] | None = None,
    kinds: Iterable[str] | None = None,
) -> list[ZoneEvent]:
    """Zone events from the ``zone_events`` table (oldest first), as the bus would have carried them."""
    from sqlalchemy import select

    from campaigns.storage.columns import as_utc
    from campaigns.storage.geofence_views import ZONE_EVENTS
    from geofence.events import TransitionKind

    events = ZONE_EVENTS.c
    stmt = select(ZONE_EVENTS).order_by(events.at, events.id).limit(limit)
    if since is not None:
        stmt = stmt.where(events.at >= since)
    if until is not None:
        stmt = stmt.where(events.at < until)
    if kinds is not None:
        stmt = stmt.where(events.kind.in_([str(k) for k in kinds]))
    if zone_ids is not None:
        stmt = stmt.where(events.zone_id.in_(list(zone_ids)))
    return [
        ZoneEvent(
            id=row.id,
            zone_id=row.zone_id,
            device_id=row.device_id or "",
            kind=TransitionKind(row.kind),
            at=as_utc(row.at),
            visit_id=row.visit_id,
            reason=row.reason,
            lat=row.lat,
            lng=row.lng,
        )  # type: ignore[arg-type]
        for row in session.execute(stmt)
    ]


def dry_run_in_db(
    session: Any,
    campaign: Campaign,
    events: Iterable[ZoneEvent],
    *,
    policy: DecisionPolicy | None = None,
    with_history: bool = True,
) -> DryRunReport:
    """``dry_run`` with zones, customers, consents (at each event's time) and history read from the
    database through ``session``; read-only."""
    from campaigns.decision_inputs import load_history, load_recipient
    from campaigns.zone_info import load_zone

    zones: dict[str, ZoneInfo | None] = {}

    def zone_for(zone_id: str) -> ZoneInfo | None:
        if zone_id not in zones:
            zones[zone_id] = load_zone(session, zone_id)
        return zones[zone_id]

    def recipient_for(event: ZoneEvent) -> Recipient | None:
        return load_recipient(session, event.device_id or None, event.at)

    def history_for(customer_id: str, at: datetime) -> list[PastDelivery]:
        return [p for p in load_history(session, customer_id, at) if p.at <= at]

    return dry_run(
        campaign,
        events,
        zone_for=zone_for,
        recipient_for=recipient_for,
        history_for=history_for if with_history else None,
        policy=policy,
    )


def campaign_zone_ids(session: Any, campaign: Campaign) -> list[str]:
    """The zones a campaign can trigger in: its zone ids plus every zone carrying one of its tags."""
    from sqlalchemy import select

    from campaigns.storage.geofence_views import ZONES
    from campaigns.zone_info import zone_info_from_row

    ids = set(campaign.trigger.zone_ids)
    if campaign.trigger.zone_tags:
        for row in session.execute(select(ZONES.c.id, ZONES.c.name, ZONES.c.data)):
            if zone_info_from_row(row).tags & campaign.trigger.zone_tags:
                ids.add(row.id)
    return sorted(ids)
