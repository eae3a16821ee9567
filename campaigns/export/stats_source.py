"""Load one campaign's rows for :func:`campaigns.attribution.campaign_stats` (the adapter half)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import false, select
from sqlmodel import Session

from campaigns.attribution import VISIT_KINDS, CampaignStats, Offer, Visit, Withdrawal, campaign_stats
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import ConsentEvent
from campaigns.storage.deliveries import Delivery
from campaigns.storage.geofence_views import ZONE_EVENTS, ZONES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(value: datetime | None) -> datetime | None:
    value = as_utc(value)
    return value.astimezone(UTC) if value is not None else None


def zone_store_map(session: Session, zone_ids: set[str]) -> dict[str, str | None]:
    """The offers' zones and every other zone of the same stores (zones table's ``store_id``)."""
    table = ZONES
    if not zone_ids:
        return dict.fromkeys(zone_ids)
    own = dict(session.execute(select(table.c.id, table.c.store_id).where(table.c.id.in_(zone_ids))).all())
    stores = {s for s in own.values() if s is not None}
    siblings = (
        session.execute(select(table.c.id, table.c.store_id).where(table.c.store_id.in_(stores))).all()
        if stores
        else []
    )
    mapping: dict[str, str | None] = dict.fromkeys(zone_ids)
    mapping.update({str(z): (str(s) if s is not None else None) for z, s in [*own.items(), *siblings]})
    return mapping


def load_campaign_stats(
    session: Session,
    campaign_id: str,
    *,
    window: timedelta,
    receipt_providers: frozenset[str],
) -> CampaignStats:
    deliveries = session.execute(select(Delivery).where(Delivery.campaign_id == campaign_id)).scalars().all()
    offers = [
        Offer(
            id=d.id, customer_id=d.customer_id, zone_id=d.zone_id, visit_id=d.visit_id, provider=d.provider,
            status=d.status, reason=d.reason, created_at=_utc(d.created_at) or EPOCH,
            sent_at=_utc(d.sent_at), delivered_at=_utc(d.delivered_at),
        )
        for d in deliveries
    ]
    customers = sorted({o.customer_id for o in offers if o.customer_id})
    starts = [o.created_at for o in offers]
    visits: list[Visit] = []
    withdrawals: list[Withdrawal] = []
    if customers and starts:
        lo, hi = min(starts), max(o.sent_at or o.delivered_at or o.created_at for o in offers) + window
        for start in range(0, len(customers), 500):  # bounded IN lists
            chunk = customers[start : start + 500]
            zone_events = ZONE_EVENTS.c
            events = session.execute(
                select(
                    zone_events.customer_id, zone_events.zone_id, zone_events.kind, zone_events.at,
                    zone_events.visit_id,
                )
                .where(zone_events.customer_id.in_(chunk))
                .where(zone_events.kind.in_(VISIT_KINDS))
                .where(zone_events.at >= lo, zone_events.at <= hi)
            )
            visits.extend(
                Visit(e.customer_id, e.zone_id, e.kind, _utc(e.at), e.visit_id)  # type: ignore[arg-type]
                for e in events
            )
            quits = session.execute(
                select(ConsentEvent.customer_id, ConsentEvent.occurred_at)
                .where(ConsentEvent.customer_id.in_(chunk))  # type: ignore[union-attr]
                .where(ConsentEvent.granted == false())
            ).all()
            withdrawals.extend(Withdrawal(c, _utc(t)) for c, t in quits)  # type: ignore[arg-type]
    zone_store = zone_store_map(session, {o.zone_id for o in offers if o.zone_id})
    return campaign_stats(
        campaign_id, offers, visits, zone_store=zone_store, withdrawals=withdrawals, window=window,
        receipt_providers=receipt_providers,
    )
