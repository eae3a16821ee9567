"""The zone-event subscriber: match campaigns, decide, and write deliveries with their caps reserved.

For each event: the active campaigns whose trigger matches (zone id or tag, kind, dates) are decided
in priority order (highest first). The first that sends or defers wins; the others are recorded as
skipped with ``superseded:<winner>``, and every skip keeps its reason (stats, dry runs). The winning
delivery row and its cap reservations are inserted in ONE transaction; a UNIQUE (customer, bucket,
slot) constraint on the reservations makes two concurrent events unable to both take a cap of one
(the loser re-reads and re-decides).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from campaigns.attribution import HOLDOUT_REASON
from campaigns.decide import Decision, DecisionPolicy, Defer, Recipient, Send, Skip, decide
from campaigns.holdout import in_holdout
from campaigns.limits import CapBucket, PastDelivery
from campaigns.model import Campaign, CampaignInvalid, CampaignStatus, ZoneInfo, parse_campaign
from campaigns.outbox_recheck import consent_now, is_suppressed
from campaigns.ports import NO_METRICS, CampaignMetrics
from campaigns.render import render_for_event
from campaigns.storage.columns import as_utc, new_id
from campaigns.storage.customers import Customer, Device
from campaigns.storage.deliveries import (
    CANCELLED,
    DEFERRED,
    FAILED,
    PENDING,
    SKIPPED,
    CampaignRow,
    CapReservation,
    Delivery,
)
from campaigns.storage.geofence_views import ZONES
from campaigns.store_events import message_status
from campaigns.transactional import KEY_PREFIX as TRANSACTIONAL
from geofence.events import ZoneEvent

log = logging.getLogger(__name__)

NOT_COUNTING = (SKIPPED, CANCELLED, FAILED)
HISTORY_SPAN = timedelta(days=8)
RESERVE_RETRIES = 4

ZoneResolver = Callable[[Session, str], ZoneInfo | None]


class ReservationContention(Exception):
    """Concurrent events kept taking the slots this one was deciding on: the log retries it later."""


class CapTaken(Exception):
    """A reservation bucket is full (another delivery took the last slot first)."""

    def __init__(self, bucket: str) -> None:
        super().__init__(bucket)
        self.bucket = bucket


# -- loading the decision's inputs ----------------------------------------------------------------
def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) not in (None, ""):
            return data[key]
    return None


def _area_centre(geometry: Any) -> tuple[float | None, float | None]:
    """A rough centre (mean of the outer ring's vertices) of a GeoJSON Point/Polygon/MultiPolygon."""
    if isinstance(geometry, dict) and "geojson" in geometry:
        geometry = geometry["geojson"]
    if not isinstance(geometry, dict):
        return None, None
    kind, coords = geometry.get("type"), geometry.get("coordinates")
    try:
        if kind == "Point":
            return float(coords[1]), float(coords[0])
        ring = coords[0] if kind == "Polygon" else coords[0][0] if kind == "MultiPolygon" else None
        if not ring:
            return None, None
        if len(ring) > 1 and list(ring[0]) == list(ring[-1]):
            ring = ring[:-1]  # GeoJSON repeats the first vertex to close the ring
        return (sum(float(p[1]) for p in ring) / len(ring), sum(float(p[0]) for p in ring) / len(ring))
    except (TypeError, IndexError, ValueError):
        return None, None


class ZoneRecord(Protocol):
    """A row of the zones table, as far as campaigns read it."""

    id: str
    name: str
    data: dict[str, Any] | None


def zone_info_from_row(row: ZoneRecord) -> ZoneInfo:
    """A ``ZoneInfo`` from the zones table (its JSON is ``zones.Zone.to_dict()``)."""
    data = dict(row.data or {})
    lat = _first(data, "lat", "center_lat")
    lng = _first(data, "lng", "lon", "center_lng")
    center = _first(data, "center", "centre")
    if isinstance(center, dict):
        lat, lng = center.get("lat", lat), center.get("lng", center.get("lon", lng))
    elif isinstance(center, list | tuple) and len(center) == 2:
        lng, lat = center  # GeoJSON order (lng, lat), as the zones package stores positions
    geometry = data.get("geometry")
    circle = data.get("circle") or (
        geometry if isinstance(geometry, dict) and geometry.get("type") == "circle" else None
    )
    if lat is None and isinstance(circle, dict):
        lat, lng = circle.get("lat"), circle.get("lng")
    travel = data.get("travel") if isinstance(data.get("travel"), dict) else {}
    if travel.get("lat") is not None and travel.get("lng") is not None:
        lat, lng = travel["lat"], travel["lng"]  # the store an isochrone was drawn around
    if lat is None:
        lat, lng = _area_centre(data.get("area") or data.get("geometry"))
    return ZoneInfo(
        id=row.id,
        name=row.name or str(data.get("name", "")),
        tz=str(_first(data, "tz", "timezone", "time_zone") or "UTC"),
        tags=frozenset(str(t) for t in data.get("tags") or ()),
        country=_first(data, "country"),
        subdivision=_first(data, "subdivision"),
        lat=float(lat) if lat is not None else None,
        lng=float(lng) if lng is not None else None,
        travel_mode=_travel_mode(travel.get("mode"), data.get("profile")),
    )


def _travel_mode(mode: Any, profile: Any) -> str | None:
    """walk / drive from the zone's travel-time sizing, else from its circle's profile."""
    if mode in ("walk", "drive"):
        return str(mode)
    if profile == "walk":
        return "walk"
    return "drive" if isinstance(profile, str) and profile.startswith("drive") else None


def load_zone(session: Session, zone_id: str) -> ZoneInfo | None:
    zones = ZONES.c
    row = session.execute(
        select(zones.id, zones.name, zones.data, zones.deleted_at).where(zones.id == zone_id)
    ).first()
    if row is None or row.deleted_at is not None:
        return None
    return zone_info_from_row(row)  # type: ignore[arg-type]  # a Row has the record's attributes


def load_recipient(session: Session, device_id: str | None, at: datetime) -> Recipient | None:
    """The customer behind a device, with consent (ledger at ``at``) and suppression applied."""
    device = session.get(Device, device_id) if device_id else None
    if device is None or not device.customer_id:
        return None
    customer = session.get(Customer, device.customer_id)
    if customer is None or customer.erased_at is not None:
        return None
    return Recipient(
        customer_id=customer.id,
        consents=consent_now(session, customer.id, at),
        locale=customer.locale,
        tz=customer.tz,
        country=customer.country,
        subdivision=customer.subdivision,
        phone_e164=customer.phone_e164,
        phone_suppressed=is_suppressed(session, customer.phone_hash),
        push_token_live=bool(device.push_token and device.push_token_active),
        first_name=customer.first_name,
        attributes=dict(customer.attributes or {}),
        max_offers_per_day=customer.max_offers_per_day,
        max_offers_per_week=customer.max_offers_per_week,
        platform=device.platform,
    )


def load_history(
    session: Session, customer_id: str, at: datetime, span: timedelta = HISTORY_SPAN
) -> list[PastDelivery]:
    rows = session.execute(
        select(
            Delivery.campaign_id,
            Delivery.zone_id,
            Delivery.visit_id,
            Delivery.channel,
            Delivery.sent_at,
            Delivery.due_at,
        )
        .where(Delivery.customer_id == customer_id)
        .where(Delivery.idempotency_key.not_like(f"{TRANSACTIONAL}%"))  # type: ignore[attr-defined]  # no cap
        .where(Delivery.status.not_in(NOT_COUNTING))  # type: ignore[attr-defined]
        .where(Delivery.due_at >= at - span)  # type: ignore[operator]
    )
    return [
        PastDelivery(r.campaign_id, r.zone_id, r.visit_id, r.channel, as_utc(r.sent_at or r.due_at))  # type: ignore[arg-type]
        for r in rows
    ]


@dataclass
class CampaignCache:
    """Parsed active campaigns, re-read when the table changes (cheap: one indexed query per event)."""

    _parsed: dict[tuple[str, int], Campaign]

    def __init__(self) -> None:
        self._parsed = {}

    def active(self, session: Session) -> list[Campaign]:
        rows = session.execute(
            select(CampaignRow.id, CampaignRow.version, CampaignRow.definition, CampaignRow.status).where(
                CampaignRow.status == CampaignStatus.ACTIVE.value
            )
        ).all()
        out = []
        for row in rows:
            key = (row.id, row.version)
            if key not in self._parsed:
                try:
                    self._parsed[key] = parse_campaign({**row.definition, "id": row.id, "status": row.status})
                except CampaignInvalid as exc:  # saved before a rule tightened: skip it, loudly
                    log.warning("campaign %s is not valid any more: %s", row.id, exc)
                    continue
            out.append(self._parsed[key])
        return out


def matching(campaigns: Iterable[Campaign], event: ZoneEvent, zone: ZoneInfo, at: datetime) -> list[Campaign]:
    """Live campaigns whose trigger matches, highest priority first (then by id, deterministic)."""
    found = [c for c in campaigns if c.is_live(at) and c.trigger.matches(event.kind, zone.id, zone.tags)]
    return sorted(found, key=lambda c: (-c.priority, c.id))


# -- writing ---------------------------------------------------------------------------------------
def idempotency_key(campaign_id: str, event_id: str) -> str:
    """One decision per (campaign, zone event): a re-published event cannot produce a second offer."""
    return f"{campaign_id}:{event_id}"


def _free_slots(session: Session, customer_id: str, bucket: CapBucket) -> list[int]:
    taken = set(
        session.execute(
            select(CapReservation.slot).where(
                CapReservation.customer_id == customer_id, CapReservation.bucket == bucket.key
            )
        ).scalars()
    )
    return [slot for slot in range(bucket.limit) if slot not in taken]


def _release_dead(session: Session, customer_id: str, bucket_key: str) -> None:
    dead = select(Delivery.id).where(Delivery.status.in_(NOT_COUNTING))  # type: ignore[attr-defined]
    session.execute(
        delete(CapReservation)
        .where(CapReservation.customer_id == customer_id, CapReservation.bucket == bucket_key)  # type: ignore[arg-type]
        .where(CapReservation.delivery_id.in_(dead))  # type: ignore[attr-defined]
    )


def reserve(
    session: Session, customer_id: str, buckets: Sequence[CapBucket], delivery_id: str, at: datetime
) -> None:
    """Take the lowest free slot of every bucket (raises ``CapTaken`` when one is full)."""
    for bucket in buckets:
        free = _free_slots(session, customer_id, bucket)
        if not free:
            # Slots held by deliveries that will never be sent (cancelled by an opt-out, skipped at send
            # time, failed) are given back lazily, here, when they are needed.
            _release_dead(session, customer_id, bucket.key)
            free = _free_slots(session, customer_id, bucket)
        if not free:
            raise CapTaken(bucket.key)
        session.add(
            CapReservation(
                customer_id=customer_id,
                bucket=bucket.key,
                slot=free[0],
                delivery_id=delivery_id,
                created_at=at,
            )
        )
    session.flush()


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
    message = render_for_event(
        campaign,
        zone,
        channel=decision.channel,
        locale=recipient.locale,
        first_name=recipient.first_name,
        expires_at=decision.expires_at,
        event_lat=event.lat,
        event_lng=event.lng,
        platform=recipient.platform,
    )
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
