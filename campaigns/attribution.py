"""Store-visit attribution: did an offer bring the customer into the store, compared with a holdout?

Pure: the adapter (``campaigns.export.stats_source``) loads one campaign's deliveries, the customers'
later zone events, the zone -> store map and consent withdrawals, and passes them here with ``window``.

Definitions (each is a choice; the reasons are next to it)
---------------------------------------------------------
- **Exposure time** of an offer: ``delivered_at`` when the provider reports delivery receipts (Twilio
  with a status callback); ``sent_at`` for channels that give none (FCM only says "accepted", the local
  outbox channel only writes a file). Counting a receipt-less push from acceptance is the only
  measurable point; counting an SMS before its receipt would credit undelivered messages.
- **Holdout**: a delivery row skipped with reason ``holdout`` (the customer qualified — consent, caps,
  windows all passed — and was deterministically held back, see ``campaigns.holdout``). Its exposure
  time is when it qualified (``created_at``): the moment the offer would have gone.
- **Eligible** = offers that qualified = rows that were (or were going to be) sent plus holdout rows;
  rows skipped for consent, caps, quiet hours… never qualified.
- **Visit** (a conversion): an ``enter`` or ``dwell`` by the same customer in the offer's zone or in
  any zone of the same store, strictly after the exposure time and within ``window``, in a different
  stay (``visit_id``) than the one that triggered the offer — being already in the zone when the offer
  fired is not a response to it.
- **Uplift** = conversion rate of exposed offers − conversion rate of holdout offers (absolute, in
  rate units); None without a holdout.
- **Opt-outs that followed**: customers who withdrew any marketing/location consent within ``window``
  after an exposed offer (a campaign that annoys shows up here).
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

HOLDOUT_REASON = "holdout"
SENT_STATUSES = frozenset({"sent", "queued", "delivered", "undelivered"})
TREATED_STATUSES = frozenset({"pending", "deferred", "sending", "sent", "queued", "delivered",
                              "undelivered", "failed", "cancelled"})  # fmt: skip
VISIT_KINDS = frozenset({"enter", "dwell"})


@dataclass(frozen=True, slots=True)
class Offer:
    """One delivery row of the campaign, as attribution needs it."""

    id: str
    customer_id: str | None
    zone_id: str | None
    visit_id: str | None
    provider: str | None
    status: str
    reason: str | None
    created_at: datetime
    sent_at: datetime | None = None
    delivered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Visit:
    customer_id: str
    zone_id: str
    kind: str
    at: datetime
    visit_id: str


@dataclass(frozen=True, slots=True)
class Withdrawal:
    customer_id: str
    occurred_at: datetime


@dataclass(frozen=True)
class CampaignStats:
    campaign_id: str
    window_s: int
    eligible: int
    sent: int
    delivered: int
    exposed: int  # offers with an exposure time (the conversion denominator)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count (holdout included)
    cancelled: int = 0
    failed: int = 0
    waiting: int = 0
    conversions: int = 0  # exposed offers followed by a visit
    visits: int = 0  # distinct store stays credited to exposed offers
    conversion_rate: float | None = None
    holdout: int = 0
    holdout_conversions: int = 0
    holdout_conversion_rate: float | None = None
    uplift: float | None = None
    opt_outs_after: int = 0
    receipt_providers: tuple[str, ...] = ()  # whose offers count from delivery, not from sending


def exposure_time(offer: Offer, receipt_providers: frozenset[str]) -> datetime | None:
    """When the customer could first have seen the offer, or None (never exposed)."""
    if offer.status == "delivered" and offer.delivered_at is not None:
        return offer.delivered_at
    if offer.status in SENT_STATUSES and offer.sent_at is not None:
        if (offer.provider or "") not in receipt_providers:
            return offer.sent_at
    return None


def _rate(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


class _VisitIndex:
    """Per customer, enter/dwell events sorted by time, for a bisect per offer."""

    def __init__(self, visits: Iterable[Visit]) -> None:
        by_customer: dict[str, list[Visit]] = defaultdict(list)
        for v in visits:
            if v.kind in VISIT_KINDS:
                by_customer[v.customer_id].append(v)
        self._visits = {c: sorted(vs, key=lambda v: v.at) for c, vs in by_customer.items()}
        self._times = {c: [v.at for v in vs] for c, vs in self._visits.items()}

    def first_after(
        self, customer_id: str, zones: frozenset[str], start: datetime, end: datetime, skip_visit: str | None
    ) -> Visit | None:
        times = self._times.get(customer_id)
        if not times:
            return None
        visits = self._visits[customer_id]
        for i in range(bisect.bisect_right(times, start), len(times)):
            v = visits[i]
            if v.at > end:
                return None
            if v.zone_id in zones and v.visit_id != skip_visit:
                return v
        return None


def _store_zones(zone_id: str | None, zone_store: Mapping[str, str | None]) -> frozenset[str]:
    if zone_id is None:
        return frozenset()
    store = zone_store.get(zone_id)
    if store is None:
        return frozenset({zone_id})
    return frozenset({zone_id, *(z for z, s in zone_store.items() if s == store)})


def campaign_stats(
    campaign_id: str,
    offers: Iterable[Offer],
    visits: Iterable[Visit],
    *,
    zone_store: Mapping[str, str | None],
    withdrawals: Iterable[Withdrawal] = (),
    window: timedelta = timedelta(hours=24),
    receipt_providers: frozenset[str] = frozenset(),
) -> CampaignStats:
    """Aggregate one campaign's outcome.

    Parameters
    ----------
    offers
        Every delivery row of the campaign (any status).
    visits
        Zone events of the campaign's customers from the first offer to the last offer + ``window``
        (more is harmless).
    zone_store
        Zone id -> store id (None for zones not tied to a store) for every zone that may matter.
    withdrawals
        Consent withdrawals of those customers.
    window
        How long after exposure a visit still counts.
    receipt_providers
        Providers whose deliveries are only exposed once a delivery receipt arrived.
    """
    index = _VisitIndex(visits)
    quits: dict[str, list[datetime]] = defaultdict(list)
    for w in withdrawals:
        quits[w.customer_id].append(w.occurred_at)
    zones_cache: dict[str | None, frozenset[str]] = {}

    def converted(offer: Offer, start: datetime) -> Visit | None:
        if offer.customer_id is None:
            return None
        zones = zones_cache.get(offer.zone_id)
        if zones is None:
            zones = zones_cache[offer.zone_id] = _store_zones(offer.zone_id, zone_store)
        return index.first_after(offer.customer_id, zones, start, start + window, offer.visit_id)

    skipped: Counter[str] = Counter()
    counts: Counter[str] = Counter()
    credited: set[tuple[str, str]] = set()
    quitters: set[str] = set()
    for offer in offers:
        if offer.status == "skipped":
            skipped[offer.reason or "unspecified"] += 1
            if offer.reason == HOLDOUT_REASON:
                counts["holdout"] += 1
                counts["holdout_conversions"] += converted(offer, offer.created_at) is not None
            continue
        if offer.status in TREATED_STATUSES:
            counts["treated"] += 1
        counts["sent"] += offer.status in SENT_STATUSES
        counts["delivered"] += offer.status == "delivered"
        counts["cancelled"] += offer.status == "cancelled"
        counts["failed"] += offer.status in ("failed", "undelivered")
        counts["waiting"] += offer.status in ("pending", "deferred", "sending")
        start = exposure_time(offer, receipt_providers)
        if start is None:
            continue
        counts["exposed"] += 1
        visit = converted(offer, start)
        if visit is not None:
            counts["conversions"] += 1
            credited.add((visit.customer_id, visit.visit_id))
        if offer.customer_id and any(start < t <= start + window for t in quits.get(offer.customer_id, ())):
            quitters.add(offer.customer_id)

    rate = _rate(counts["conversions"], counts["exposed"])
    holdout_rate = _rate(counts["holdout_conversions"], counts["holdout"])
    return CampaignStats(
        campaign_id=campaign_id,
        window_s=int(window.total_seconds()),
        eligible=counts["treated"] + counts["holdout"],
        sent=counts["sent"],
        delivered=counts["delivered"],
        exposed=counts["exposed"],
        skipped=dict(sorted(skipped.items())),
        cancelled=counts["cancelled"],
        failed=counts["failed"],
        waiting=counts["waiting"],
        conversions=counts["conversions"],
        visits=len(credited),
        conversion_rate=rate,
        holdout=counts["holdout"],
        holdout_conversions=counts["holdout_conversions"],
        holdout_conversion_rate=holdout_rate,
        uplift=(rate - holdout_rate) if rate is not None and holdout_rate is not None else None,
        opt_outs_after=len(quitters),
        receipt_providers=tuple(sorted(receipt_providers)),
    )
