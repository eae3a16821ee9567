"""Store-visit attribution: exposure rules, same-store zones, holdout uplift, opt-outs (pure + DB)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session

from campaigns.attribution import Offer, Visit, Withdrawal, campaign_stats, exposure_time
from campaigns.export.stats_source import load_campaign_stats
from geofence.service.tables.campaigns import Delivery
from geofence.service.tables.customers import ConsentEvent, Customer
from geofence.service.tables.presence import ZoneEventRow

T0 = datetime(2026, 3, 2, 11, 30, tzinfo=UTC)
H = timedelta(hours=1)
STORES = {"walk-a": "store-a", "shop-a": "store-a", "walk-b": "store-b", "lonely": None}


def offer(oid: str, customer: str, *, status="sent", provider="outbox", zone="walk-a", reason=None,
          sent=T0, delivered=None, visit="trigger") -> Offer:  # fmt: skip
    return Offer(
        id=oid,
        customer_id=customer,
        zone_id=zone,
        visit_id=f"{customer}-{visit}",
        provider=provider,
        status=status,
        reason=reason,
        created_at=T0,
        sent_at=sent if status != "skipped" else None,
        delivered_at=delivered,
    )


def visit(customer: str, at: datetime, *, zone="shop-a", kind="enter", vid="later") -> Visit:
    return Visit(customer, zone, kind, at, f"{customer}-{vid}")


def test_visit_to_another_zone_of_the_same_store_within_window_converts():
    stats = campaign_stats("c", [offer("o1", "u1")], [visit("u1", T0 + 2 * H)], zone_store=STORES)
    assert (stats.exposed, stats.conversions, stats.visits, stats.conversion_rate) == (1, 1, 1, 1.0)


@pytest.mark.parametrize(
    ("v", "why"),
    [
        (visit("u1", T0 + 25 * H), "after the window"),
        (visit("u1", T0 - H), "before the offer"),
        (visit("u1", T0 + H, zone="walk-b"), "another store"),
        (visit("u1", T0 + H, kind="exit"), "an exit is not a visit"),
        (visit("u1", T0 + H, zone="walk-a", vid="trigger", kind="dwell"), "the stay that triggered it"),
        (visit("u2", T0 + H), "someone else"),
    ],
)
def test_visits_that_do_not_count(v, why):
    stats = campaign_stats("c", [offer("o1", "u1")], [v], zone_store=STORES)
    assert stats.conversions == 0, why


def test_sms_with_delivery_receipts_counts_from_delivery_only():
    receipts = frozenset({"twilio"})
    sent_only = offer("o1", "u1", provider="twilio")
    delivered = offer("o2", "u2", provider="twilio", status="delivered", delivered=T0 + H)
    push = offer("o3", "u3", provider="fcm")
    assert exposure_time(sent_only, receipts) is None
    assert exposure_time(delivered, receipts) == T0 + H
    assert exposure_time(push, receipts) == T0
    visits = [visit("u1", T0 + 2 * H), visit("u2", T0 + 30 * timedelta(minutes=1)), visit("u3", T0 + 2 * H)]
    stats = campaign_stats("c", [sent_only, delivered, push], visits, zone_store=STORES,
                           receipt_providers=receipts)  # fmt: skip
    # u2 visited before the receipt arrived: no credit; u1 is not exposed without a receipt.
    assert (stats.sent, stats.delivered, stats.exposed, stats.conversions) == (3, 1, 2, 1)


def test_holdout_gives_uplift_and_skips_are_counted_by_reason():
    offers = [
        *(offer(f"t{i}", f"t{i}") for i in range(10)),
        *(offer(f"h{i}", f"h{i}", status="skipped", reason="holdout") for i in range(5)),
        offer("q", "q", status="skipped", reason="quiet_hours"),
        offer("n", "n", status="skipped", reason="no_consent:sms_marketing"),
    ]
    visits = [visit(f"t{i}", T0 + H) for i in range(6)] + [visit("h0", T0 + H)]
    stats = campaign_stats("c", offers, visits, zone_store=STORES)
    assert stats.eligible == 15
    assert stats.skipped == {"holdout": 5, "no_consent:sms_marketing": 1, "quiet_hours": 1}
    assert stats.conversion_rate == pytest.approx(0.6)
    assert stats.holdout_conversion_rate == pytest.approx(0.2)
    assert stats.uplift == pytest.approx(0.4)


def test_no_holdout_means_no_uplift_and_nothing_sent_means_no_rate():
    assert campaign_stats("c", [offer("o", "u")], [], zone_store=STORES).uplift is None
    empty = campaign_stats("c", [], [], zone_store=STORES)
    assert (empty.eligible, empty.conversion_rate, empty.uplift) == (0, None, None)


def test_opt_outs_that_followed_an_offer_are_counted_once_per_customer():
    offers = [offer("o1", "u1"), offer("o2", "u1", zone="walk-b"), offer("o3", "u2")]
    quits = [Withdrawal("u1", T0 + H), Withdrawal("u2", T0 - H)]
    stats = campaign_stats("c", offers, [], zone_store=STORES, withdrawals=quits)
    assert stats.opt_outs_after == 1


def test_zone_without_store_only_credits_itself():
    stats = campaign_stats(
        "c", [offer("o1", "u1", zone="lonely")],
        [visit("u1", T0 + H, zone="lonely"), visit("u1", T0 + H, zone="shop-a")], zone_store=STORES,
    )  # fmt: skip
    assert (stats.conversions, stats.visits) == (1, 1)


def test_load_campaign_stats_from_the_tables(engine):
    with Session(engine) as s:
        for cid in ("u1", "u2", "u3"):
            s.add(Customer(id=cid, created_at=T0))
        s.add(Delivery(id="d1", idempotency_key="k1", campaign_id="camp", customer_id="u1", zone_id="walk-a",
                       visit_id="v-trigger", channel="push", provider="fcm", status="sent", due_at=T0,
                       created_at=T0, sent_at=T0))  # fmt: skip
        s.add(Delivery(id="d2", idempotency_key="k2", campaign_id="camp", customer_id="u2",
                       zone_id="walk-a", channel="push", status="skipped", reason="holdout", due_at=T0,
                       created_at=T0))  # fmt: skip
        s.add(Delivery(id="d3", idempotency_key="k3", campaign_id="other", customer_id="u3",
                       zone_id="walk-a", channel="push", provider="fcm", status="sent", due_at=T0,
                       created_at=T0, sent_at=T0))  # fmt: skip
        s.add(ZoneEventRow(id="e1", zone_id="walk-a", customer_id="u1", kind="dwell", at=T0 + H,
                           visit_id="v2", reason="dwell"))  # fmt: skip
        s.add(ZoneEventRow(id="e2", zone_id="walk-a", customer_id="u1", kind="enter", at=T0 + 2 * H,
                           visit_id="v-trigger", reason="x"))  # fmt: skip
        s.add(ConsentEvent(id="w1", customer_id="u1", purpose="push_marketing", granted=False,
                           occurred_at=T0 + 3 * H, recorded_at=T0 + 3 * H, source="app_screen"))  # fmt: skip
        s.commit()
        stats = load_campaign_stats(s, "camp", window=timedelta(hours=24), receipt_providers=frozenset())
    assert (stats.eligible, stats.sent, stats.exposed, stats.holdout) == (2, 1, 1, 1)
    assert (stats.conversions, stats.conversion_rate, stats.holdout_conversion_rate) == (1, 1.0, 0.0)
    assert stats.uplift == 1.0
    assert stats.opt_outs_after == 1
