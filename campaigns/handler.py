"""The zone-event subscriber: match campaigns, decide, and write deliveries with their caps reserved.

For each event: the active campaigns whose trigger matches (zone id or tag, kind, dates) are decided
in priority order (highest first). The first that sends or defers wins; the others are recorded as
skipped with ``superseded:<winner>``, and every skip keeps its reason (stats, dry runs). The winning
delivery row and its cap reservations are inserted in ONE transaction; a UNIQUE (customer, bucket,
slot) constraint on the reservations makes two concurrent events unable to both take a cap of one
(the loser re-reads and re-decides).

This module holds the handler and the delivery rows it writes; what it reads lives beside it
(``campaigns.decision_inputs``: recipient, history, matching campaigns; ``campaigns.zone_info``: the
zone), and so do the cap reservations (``campaigns.cap_reservations``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from campaigns.attribution import HOLDOUT_REASON
from campaigns.cap_reservations import CapTaken, reserve
from campaigns.decide import Decision, DecisionPolicy, Defer, Recipient, Send, Skip, decide
from campaigns.decision_inputs import HISTORY_SPAN, CampaignCache, load_history, load_recipient, matching
from campaigns.holdout import in_holdout
from campaigns.model import Campaign, ZoneInfo
from campaigns.ports import NO_METRICS, CampaignMetrics
from campaigns.render import render_for_event
from campaigns.storage.columns import new_id
from campaigns.storage.deliveries import DEFERRED, PENDING, SKIPPED, Delivery
from campaigns.store_events import message_status
from campaigns.zone_info import load_zone
from geofence.events import ZoneEvent

RESERVE_RETRIES = 4

ZoneResolver = Callable[[Session, str], ZoneInfo | None]


class ReservationContention(Exception):
    """Concurrent events kept taking the slots this one was deciding on: the log retries it later."""


def idempotency_key(campaign_id: str, event_id: str) -> str:
    """One decision per (campaign, zone event): a re-published event cannot produce a second offer."""
    return f"{campaign_id}:{event_id}"


def _row(
    event: ZoneEvent, campaign: Campaign, customer_id: str | None, at: datetime, **values: Any
) -> Delivery:
    return Delivery(
        idempotency_key=idempotency_key(campaign.id, event.id),
        campaign_id=campaign.id,
        customer_id=customer_id,
        device_id=event.device_id,
        zone_id=event.zone_id,
        event_id=event.id,
        visit_id=event.visit_id,
        created_at=at,
        updated_at=at,
        **values,
    )


def skipped_row(
    event: ZoneEvent,
    campaign: Campaign,
    customer_id: str | None,
    reason: str,
    at: datetime,
    channel: str | None = None,
) -> Delivery:
    return _row(
        event,
        campaign,
        customer_id,
        at,
        channel=channel or campaign.channels()[0],
        status=SKIPPED,
        reason=reason,
        due_at=at,
    )


def delivery_row(
    event: ZoneEvent,
    campaign: Campaign,
    zone: ZoneInfo,
    recipient: Recipient,
    decision: Send | Defer,
    at: datetime,
) -> Delivery:
    message = render_for_event(campaign, zone, event, recipient, decision)
    data: dict[str, Any] = dict(message.data)
    data.update({"_near_exit_s": str(campaign.near_exit_s), "_near_m": str(campaign.near_m)})
    if zone.lat is not None and zone.lng is not None:
        data.update({"_zone_lat": str(zone.lat), "_zone_lng": str(zone.lng)})
    if isinstance(decision, Defer):
        data["_deferred"] = "1"
    return _row(
        event,
        campaign,
        recipient.customer_id,
        at,
        id=new_id(),
        channel=decision.channel,
        status=DEFERRED if isinstance(decision, Defer) else PENDING,
        reason=decision.reason,
        locale=message.locale,
        title=message.title,
        body=message.body,
        data=data,
        due_at=decision.at,
        expires_at=decision.expires_at,
    )


@dataclass(frozen=True, slots=True)
class Handled:
    campaign_id: str
    outcome: str
    reason: str
    delivery_id: str | None = None


class CampaignHandler:
    """The zone-event log's ``campaigns`` consumer; one short transaction per event.

    Idempotent by event id: a (campaign, event) pair already decided is not decided again (and the
    delivery's unique ``idempotency_key`` holds against a concurrent second decision), so the log may
    hand an event again after a crash. Raises when an event cannot be decided: the log retries it."""

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime],
        policy: DecisionPolicy | None = None,
        zone_resolver: ZoneResolver | None = None,
        metrics: CampaignMetrics = NO_METRICS,
    ) -> None:
        self.engine = engine
        self.now = now
        self.metrics = metrics
        self.policy = policy or DecisionPolicy()
        self.zone_resolver = zone_resolver or load_zone
        self.campaigns = CampaignCache()

    def __call__(self, events: Sequence[ZoneEvent]) -> None:
        for event in events:
            self.handle(event)

    def handle(self, event: ZoneEvent) -> list[Handled]:
        for _ in range(RESERVE_RETRIES):
            try:
                with Session(self.engine, expire_on_commit=False) as session:
                    handled = self._handle_once(session, event)
                    session.commit()
            except IntegrityError:
                continue  # a concurrent event took a slot (or wrote this key): re-read and decide again
            for h in handled:
                self.metrics.decided(h.outcome, h.reason.split(":")[0].split(";")[0])
            return handled
        raise ReservationContention(f"{RESERVE_RETRIES} reservation conflicts in a row")

    def _handle_once(self, session: Session, event: ZoneEvent) -> list[Handled]:
        at = self.now()
        zone = self.zone_resolver(session, event.zone_id)
        if zone is None:
            return []
        candidates = matching(self.campaigns.active(session), event, zone, at)
        if not candidates:
            return []
        keys = [idempotency_key(c.id, event.id) for c in candidates]
        done = set(
            session.execute(
                select(Delivery.idempotency_key).where(Delivery.idempotency_key.in_(keys))
            ).scalars()
        )  # type: ignore[attr-defined]
        recipient = load_recipient(session, event.device_id, at)
        longest = max(
            [HISTORY_SPAN]
            + [timedelta(seconds=max(c.caps.cooldown_s, c.caps.zone_cooldown_s)) for c in candidates]
        )
        history = load_history(session, recipient.customer_id, at, longest) if recipient else []
        customer_id = recipient.customer_id if recipient else None
        handled: list[Handled] = []
        skipped: list[Delivery] = []  # added at the end, each with its message.skipped event
        winner: str | None = None
        for campaign in candidates:
            if idempotency_key(campaign.id, event.id) in done:
                continue
            if winner is not None:
                skipped.append(skipped_row(event, campaign, customer_id, f"superseded:{winner}", at))
                handled.append(Handled(campaign.id, "skip", f"superseded:{winner}"))
                continue
            decision: Decision = decide(event, campaign, zone, recipient, history, at, self.policy)
            if isinstance(decision, Skip) or recipient is None:
                reason = decision.reason
                skipped.append(skipped_row(event, campaign, customer_id, reason, at, decision.channel))
                handled.append(Handled(campaign.id, "skip", reason))
                continue
            if in_holdout(campaign.id, recipient.customer_id, campaign.holdout_share):
                # Qualified but held back (the control group of the stats); it also wins over lower
                # priority campaigns so the control group receives nothing from this trigger.
                held_back = skipped_row(event, campaign, customer_id, HOLDOUT_REASON, at, decision.channel)
                skipped.append(held_back)
                handled.append(Handled(campaign.id, "skip", HOLDOUT_REASON))
                winner = campaign.id
                continue
            try:
                row = delivery_row(event, campaign, zone, recipient, decision, at)
            except ValueError as exc:  # e.g. an SMS sender that cannot take STOP replies
                reason = f"render_error:{exc}"[:300]
                skipped.append(skipped_row(event, campaign, customer_id, reason, at, decision.channel))
                handled.append(Handled(campaign.id, "skip", reason))
                continue
            try:
                with session.begin_nested():
                    session.add(row)
                    session.flush()
                    reserve(session, recipient.customer_id, decision.buckets, row.id, at)
            except CapTaken as taken:
                reason = f"cap:{taken.bucket.split(':')[0]}_taken"
                skipped.append(skipped_row(event, campaign, customer_id, reason, at, decision.channel))
                handled.append(Handled(campaign.id, "skip", reason))
                continue
            winner = campaign.id
            handled.append(Handled(campaign.id, decision.outcome, decision.reason, row.id))
        session.add_all(skipped)
        session.flush()
        for row in skipped:
            message_status(session, row, SKIPPED, reason=row.reason, at=at)
        return handled
