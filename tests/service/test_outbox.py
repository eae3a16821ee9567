"""The outbox on SQLite and PostgreSQL: idempotent enqueue, leases, re-check at send time, retries,
recipient hygiene."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from freezegun import freeze_time
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.outbox import backoff, claim_due, enqueue
from campaigns.outbox_sending import send_claimed
from campaigns.providers.base import InvalidRecipient, PermanentError, RetryableError
from geofence.service import clock
from geofence.service.tables.campaigns import (
    FAILED,
    PENDING,
    SENDING,
    SENT,
    SKIPPED,
    CapReservation,
    Delivery,
)
from geofence.service.tables.customers import ConsentEvent, Device, Suppression
from tests.service.campaign_factories import (
    RecordingProvider,
    add_customer,
    add_delivery,
    add_zone_event,
)

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def _send_all(engine: Engine, provider: RecordingProvider, *, max_attempts: int = 6) -> list[str]:
    claimed = claim_due(engine, at=clock.now(), lease=LEASE, limit=50, worker="t")
    return [
        send_claimed(
            engine, d, providers={"push": provider, "sms": provider}, now=clock.now, max_attempts=max_attempts
        ).status
        for d in claimed
    ]


def _row(session: Session, key: str) -> Delivery:
    session.expire_all()
    return session.execute(select(Delivery).where(Delivery.idempotency_key == key)).scalar_one()


def test_enqueue_is_idempotent(session: Session) -> None:
    first = Delivery(idempotency_key="c1:e1", channel="push", due_at=T0, created_at=T0)
    again = Delivery(idempotency_key="c1:e1", channel="push", due_at=T0, created_at=T0)
    assert enqueue(session, first) is True
    assert enqueue(session, again) is False
    session.commit()
    assert len(session.execute(select(Delivery)).scalars().all()) == 1


def test_due_rows_are_sent_once_and_recorded(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1")
    add_delivery(session, T0 + timedelta(hours=1), key="later")
    provider = RecordingProvider()
    with freeze_time(T0 + timedelta(seconds=5)):
        assert _send_all(engine, provider) == [SENT]
        assert _send_all(engine, provider) == []  # nothing due any more
    row = _row(session, "k1")
    assert (row.status, row.provider_message_id, row.attempts) == (SENT, "m-1", 1)
    assert [m.to for m in provider.sent] == ["tok-dev1"]
    assert provider.sent[0].idempotency_key == "k1"
    assert _row(session, "later").status == PENDING


def test_a_claim_killed_mid_send_is_picked_up_after_the_lease(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1")
    provider = RecordingProvider()
    with freeze_time(T0) as frozen:
        dead = claim_due(engine, at=clock.now(), lease=LEASE, limit=10, worker="dead")
        assert [d.idempotency_key for d in dead] == ["k1"]  # leased, and then the process died
        assert _row(session, "k1").status == SENDING
        frozen.tick(timedelta(seconds=30))
        assert _send_all(engine, provider) == []  # lease still held
        frozen.tick(timedelta(seconds=31))
        assert _send_all(engine, provider) == [SENT]  # lease lapsed: another dispatcher sends it
        # The old claim, if it was only slow, finds its lease gone and does not send a second time.
        late = send_claimed(engine, dead[0], providers={"push": provider}, now=clock.now, max_attempts=6)
        assert late.status == "lease_lost"
    row = _row(session, "k1")
    assert (row.status, row.attempts, row.provider_message_id) == (SENT, 2, "m-1")
    assert len(provider.sent) == 1


def test_transient_failures_back_off_then_fail_at_the_cap(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1")
    provider = RecordingProvider(errors=[RetryableError("503", code="503")] * 3)
    with freeze_time(T0) as frozen:
        assert _send_all(engine, provider, max_attempts=3) == [PENDING]
        row = _row(session, "k1")
        assert row.due_at.replace(tzinfo=UTC) == T0 + backoff(1)
        assert row.error_code == "503"
        frozen.tick(backoff(1))
        assert _send_all(engine, provider, max_attempts=3) == [PENDING]
        frozen.tick(backoff(2))
        assert _send_all(engine, provider, max_attempts=3) == [FAILED]
    row = _row(session, "k1")
    assert (row.status, row.reason, row.attempts) == (FAILED, "max_attempts", 3)
    assert provider.sent == []


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3)] == [30, 60, 120]
    assert backoff(30) == timedelta(hours=1)


def test_permanent_error_fails_and_releases_caps(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    row = add_delivery(session, T0, key="k1")
    session.add(
        CapReservation(
            customer_id="cust1", bucket="day:2026-11-23", slot=0, delivery_id=row.id, created_at=T0
        )
    )
    session.commit()
    with freeze_time(T0):
        assert _send_all(engine, RecordingProvider(errors=[PermanentError("bad payload")])) == [FAILED]
    assert _row(session, "k1").reason == "permanent_error"
    assert session.execute(select(CapReservation)).scalars().all() == []


def test_unregistered_token_deactivates_the_device(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1")
    error = InvalidRecipient("gone", kind="token_unregistered", code="UNREGISTERED")
    with freeze_time(T0):
        assert _send_all(engine, RecordingProvider(errors=[error])) == [FAILED]
    session.expire_all()
    device = session.get(Device, "dev1")
    assert device is not None and device.push_token_active is False
    assert _row(session, "k1").error_code == "UNREGISTERED"


def test_twilio_21610_appends_a_withdrawal_and_cancels_waiting_sms(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1", channel="sms")
    add_delivery(session, T0 + timedelta(hours=2), key="k2", channel="sms")
    error = InvalidRecipient("unsubscribed", kind="unsubscribed", code="21610", sender="36111")
    with freeze_time(T0):
        assert _send_all(engine, RecordingProvider(errors=[error])) == [FAILED]
    withdrawal = session.execute(
        select(ConsentEvent).where(ConsentEvent.purpose == "sms_marketing", ConsentEvent.granted.is_(False))
    ).scalar_one()
    assert withdrawal.source == "provider"
    assert withdrawal.evidence == {"code": "21610", "sender": "36111"}
    assert _row(session, "k2").status == "cancelled"


def test_invalid_number_is_failed_and_recorded(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1", channel="sms")
    with freeze_time(T0):
        _send_all(
            engine, RecordingProvider(errors=[InvalidRecipient("bad", kind="number_invalid", code="21211")])
        )
    row = _row(session, "k1")
    assert (row.status, row.reason, row.error_code) == (FAILED, "number_invalid", "21211")


def test_consent_withdrawn_after_enqueue_is_rechecked(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1")
    session.add(
        ConsentEvent(
            customer_id="cust1",
            seq=9,
            purpose="push_marketing",
            granted=False,
            occurred_at=T0,
            recorded_at=T0,
            source="app_screen",
        )
    )
    session.commit()
    provider = RecordingProvider()
    with freeze_time(T0 + timedelta(seconds=1)):
        assert _send_all(engine, provider) == [SKIPPED]
    assert _row(session, "k1").reason == "no_consent:push_marketing"
    assert provider.sent == []


def test_suppressed_number_gets_no_sms(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1", channel="sms")
    session.add(Suppression(phone_hash="h-cust1", channel="sms", reason="stop", created_at=T0))
    session.commit()
    with freeze_time(T0):
        assert _send_all(engine, RecordingProvider()) == [SKIPPED]
    assert _row(session, "k1").reason == "suppressed"


def test_expired_offer_is_not_sent(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    add_delivery(session, T0, key="k1", expires_in=timedelta(minutes=5))
    with freeze_time(T0 + timedelta(minutes=6)):
        assert _send_all(engine, RecordingProvider()) == [SKIPPED]
    assert _row(session, "k1").reason == "expired"


DEFERRED_DATA = {
    "_deferred": "1",
    "_near_exit_s": "900",
    "_near_m": "500",
    "_zone_lat": "48.8566",
    "_zone_lng": "2.3522",
}


def test_deferred_offer_requires_presence_at_send_time(engine: Engine, session: Session) -> None:
    add_customer(session, T0)
    for key in ("inside", "left-long-ago", "left-just-now", "left-far", "unknown"):
        add_delivery(session, T0, key=key, zone_id=key, status="deferred", data=DEFERRED_DATA)
    add_zone_event(session, event_id="e1", at=T0 - timedelta(hours=2), zone_id="inside")
    add_zone_event(session, event_id="e2", at=T0 - timedelta(hours=2), zone_id="left-long-ago")
    add_zone_event(session, event_id="e3", at=T0 - timedelta(hours=1), kind="exit", zone_id="left-long-ago")
    add_zone_event(
        session,
        event_id="e4",
        at=T0 - timedelta(minutes=5),
        kind="exit",
        zone_id="left-just-now",
        lat=48.857,
        lng=2.353,
    )
    add_zone_event(
        session,
        event_id="e5",
        at=T0 - timedelta(minutes=5),
        kind="exit",
        zone_id="left-far",
        lat=48.90,
        lng=2.40,
    )
    provider = RecordingProvider()
    with freeze_time(T0):
        _send_all(engine, provider)
    outcome = {
        k: (_row(session, k).status, _row(session, k).reason)
        for k in ("inside", "left-long-ago", "left-just-now", "left-far", "unknown")
    }
    assert outcome["inside"][0] == SENT
    assert outcome["left-just-now"][0] == SENT
    assert outcome["left-long-ago"] == (SKIPPED, "left_zone")
    assert outcome["left-far"] == (SKIPPED, "left_zone")
    assert outcome["unknown"] == (SKIPPED, "presence_unknown")
    assert all(not k.startswith("_") for m in provider.sent for k in m.data)  # context stays private
