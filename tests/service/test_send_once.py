"""A marketing message never reaches a person twice: the send protocol of the outbox with the real FCM
and Twilio providers against their loopback fakes (one process; the multi-process runs are in
test_sends_under_faults.py)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from campaigns.dispatcher import dispatch_due
from campaigns.providers.base import OutboundMessage, SendResult
from campaigns.providers.fcm import FcmProvider
from campaigns.providers.twilio_sms import TwilioSender, TwilioSmsProvider
from geofence.service import clock
from geofence.service.db import make_engine
from geofence.service.tables.campaigns import FAILED, QUEUED, SENDING, SENT, Delivery
from tests.fakes.fcm_transport import PROJECT, AnonymousCredential, FakeFcmServer, point_app_at
from tests.fakes.loopback import Chaos
from tests.fakes.twilio_http import ACCOUNT_SID, AUTH_TOKEN
from tests.fakes.twilio_server import FakeTwilioServer, point_provider_at
from tests.service.campaign_factories import RecordingProvider, add_customer, add_delivery

PHONE = "+33612345678"
HELD = Chaos(hold_rate=1.0, hold_s=0.8)  # every request held past the client's timeout, then accepted


def _row(engine: Engine, key: str) -> Delivery:
    with Session(engine) as session:
        return session.execute(select(Delivery).where(Delivery.idempotency_key == key)).scalar_one()


def _dispatch(engine: Engine, providers: dict, **kw) -> dict[str, int]:  # type: ignore[type-arg]
    lease = timedelta(seconds=30)
    return dispatch_due(engine, providers=providers, now=clock.now, lease=lease, **kw).by_status


def _twilio(timeout_s: float = 0.3) -> TwilioSmsProvider:
    sender = TwilioSender(from_number="36123")
    return TwilioSmsProvider(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, sender=sender,
                             status_callback_url=None, timeout_s=timeout_s, clock=clock.now)


def test_an_sms_without_an_answer_is_reconciled_from_twilios_list_not_sent_again(
    engine: Engine, session: Session
) -> None:
    add_customer(session, clock.now(), phone=PHONE)
    add_delivery(session, clock.now(), key="k1", channel="sms")
    provider = _twilio()
    with FakeTwilioServer(chaos=HELD) as twilio:
        point_provider_at(provider, twilio)
        assert _dispatch(engine, {"sms": provider}) == {SENDING: 1}  # timed out: outcome unknown
        row = _row(engine, "k1")
        assert (row.status, row.reason) == (SENDING, "outcome_unknown")
        assert row.send_started_at is not None
        assert _dispatch(engine, {"sms": provider}) == {}  # not claimable before it can be settled
        twilio.chaos = None
        time.sleep(2 * provider.send_budget_s + 0.2)
        assert _dispatch(engine, {"sms": provider}) == {QUEUED: 1}  # what Twilio's list says of it
    row = _row(engine, "k1")
    assert (row.status, row.reason) == (QUEUED, "reconciled")
    assert row.provider_message_id == twilio.messages[0]["sid"]
    assert len(twilio.forms) == 1 and twilio.accepted[PHONE] == 1  # one POST, one message: never resent


def test_an_sms_twilio_never_accepted_is_dropped_with_a_reason_not_sent_blindly(
    engine: Engine, session: Session
) -> None:
    add_customer(session, clock.now(), phone=PHONE)
    add_delivery(session, clock.now(), key="k1", channel="sms")
    provider = _twilio()
    with FakeTwilioServer(chaos=Chaos(hold_rate=1.0, hold_s=0.8)) as twilio:
        point_provider_at(provider, twilio)
        assert _dispatch(engine, {"sms": provider}) == {SENDING: 1}
        time.sleep(2 * provider.send_budget_s + 0.2)
        twilio.messages.clear()  # as if Twilio had dropped the request: the list shows nothing
        assert _dispatch(engine, {"sms": provider}) == {FAILED: 1}
    row = _row(engine, "k1")
    assert (row.status, row.reason, row.error_code) == (FAILED, "ambiguous_send", "ambiguous_send")
    assert len(twilio.forms) == 1


def test_a_push_without_an_answer_is_dropped_as_ambiguous_not_sent_again(
    engine: Engine, session: Session
) -> None:
    add_customer(session, clock.now())
    add_delivery(session, clock.now(), key="k1", channel="push")
    with FakeFcmServer(chaos=HELD) as fcm:
        provider = FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, timeout_s=0.2,
                               clock=clock.now)
        point_app_at(provider.app, fcm)
        try:
            assert _dispatch(engine, {"push": provider}) == {SENDING: 1}
            fcm.chaos = None
            time.sleep(2 * provider.send_budget_s + 0.2)
            assert _dispatch(engine, {"push": provider}) == {FAILED: 1}  # FCM cannot be asked
        finally:
            provider.close()
    assert _row(engine, "k1").reason == "ambiguous_send"
    assert fcm.arrived == 1 and fcm.accepted["tok-dev1"] == 1


class StampChecker(RecordingProvider):
    """Reads the row from another connection while the send is in progress."""

    engine: Engine | None = None
    seen: list[object] = []

    def send(self, msg: OutboundMessage) -> SendResult:
        assert self.engine is not None
        self.seen.append(_row(self.engine, msg.idempotency_key).send_started_at)
        return super().send(msg)


def test_a_row_is_marked_as_being_sent_and_committed_before_the_provider_call(
    engine: Engine, session: Session
) -> None:
    add_customer(session, clock.now())
    add_delivery(session, clock.now(), key="k1")
    provider = StampChecker()
    provider.engine, provider.seen = engine, []
    assert _dispatch(engine, {"push": provider}) == {SENT: 1}
    assert provider.seen and provider.seen[0] is not None


class KillsItsDispatchersConnections(RecordingProvider):
    """Accepts the message, then ends every database connection of the dispatcher (as a PostgreSQL
    restart or an operator's pg_terminate_backend would) before the dispatcher writes the result."""

    admin: Engine | None = None
    app_name: str = ""

    def send(self, msg: OutboundMessage) -> SendResult:
        result = super().send(msg)
        assert self.admin is not None
        with self.admin.connect() as conn:
            killed = conn.execute(
                text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                     " WHERE application_name = :a"),
                {"a": self.app_name},
            ).scalar()
            conn.commit()
        assert killed
        return result


@pytest.mark.postgres
def test_the_result_of_a_successful_send_is_written_despite_a_killed_connection(pg_url: str) -> None:
    app_name = "dispatcher-under-test"
    engine = make_engine(f"{pg_url}?application_name={app_name}")
    admin = make_engine(pg_url)
    try:
        with Session(engine) as session:
            session.execute(text("TRUNCATE deliveries, consent_events, devices, customers CASCADE"))
            session.commit()
            add_customer(session, clock.now())
            for i in range(3):
                add_delivery(session, clock.now(), key=f"k{i}")
        provider = KillsItsDispatchersConnections()
        provider.admin, provider.app_name = admin, app_name
        stats = dispatch_due(engine, providers={"push": provider}, now=clock.now, lease=timedelta(seconds=1))
        assert stats.by_status == {SENT: 3}
        time.sleep(1.1)  # every lease lapsed: nothing is left to be claimed and sent again
        assert dispatch_due(engine, providers={"push": provider}, now=clock.now).claimed == 0
        assert sorted(m.idempotency_key for m in provider.sent) == ["k0", "k1", "k2"]
        assert {_row(engine, f"k{i}").status for i in range(3)} == {SENT}
    finally:
        with Session(admin) as session:
            session.execute(text("TRUNCATE deliveries, consent_events, devices, customers CASCADE"))
            session.commit()
        engine.dispose()
        admin.dispose()
