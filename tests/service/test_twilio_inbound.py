"""The Twilio inbound SMS webhook, driven exactly as Twilio posts it and signed with the real SDK."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from twilio.request_validator import RequestValidator

from campaigns import customers as uc
from campaigns.consent import Purpose, Source
from campaigns.phones import phone_hash
from campaigns.privacy import erase_customer
from geofence.service import apikeys
from geofence.service.db import session_scope
from geofence.service.location_data import SqlLocationData
from geofence.service.settings import Settings
from geofence.service.tables.campaigns import CANCELLED, DEFERRED, PENDING, SENT, Delivery
from geofence.service.tables.customers import ConsentEvent, InboundMessage, Suppression
from tests.service.consent_helpers import build_app

TOKEN = "twilio-test-auth-token"
KEY = "test-hash-key"
BASE = "https://engine.example.test"
PATH = "/v1/twilio/sms/inbound"
AT = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
FR_PHONE = "+33612345678"
US_PHONE = "+14155552671"

_sid = iter(range(1, 1_000_000))


@pytest.fixture
def client(engine, tmp_path):
    settings = Settings(
        env="test",
        database_url=str(engine.url),
        outbox_dir=tmp_path / "outbox",
        export_dir=tmp_path / "exports",
        scheduler={"enabled": False},
        auth_required=True,  # the webhook needs no API key: its signature is the credential
        migrate_on_start=False,
        hash_key=KEY,
        twilio={"auth_token": TOKEN},
        public_base_url=BASE,
    )
    with TestClient(build_app(settings, engine)) as c:
        yield c


def twilio_params(body: str, sender: str = FR_PHONE, sid: str | None = None) -> dict[str, str]:
    """The fields Twilio posts for an incoming SMS (a subset of the real set, same names)."""
    return {
        "ToCountry": "FR",
        "ToState": "",
        "SmsMessageSid": sid or f"SM{next(_sid):032d}",
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid or "",
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "FR" if sender.startswith("+33") else "US",
        "To": "+33757000000",
        "MessagingServiceSid": "MG" + "0" * 32,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid or f"SM{next(_sid):032d}",
        "AccountSid": "AC" + "1" * 32,
        "From": sender,
        "ApiVersion": "2010-04-01",
    }


def post(client, params, *, signature: str | None = "compute", url: str = BASE + PATH):
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if signature == "compute":
        signature = RequestValidator(TOKEN).compute_signature(url, params)
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(PATH, content=urlencode(params), headers=headers)


def reply_of(response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    return response.text


def customer_with_sms(engine, phone=FR_PHONE, locale="fr", crm_id="crm-1"):
    with session_scope(engine) as s:
        customer, _ = uc.upsert_customer(
            s, uc.CustomerInput(crm_id=crm_id, phone=phone, locale=locale, country=None), at=AT, hash_key=KEY
        )
        for purpose in Purpose:
            uc.record_consent(
                s, customer_id=customer.id, purpose=purpose, granted=True, source=Source.IMPORT, at=AT
            )
        return customer.id


def add_deliveries(engine, customer_id):
    with session_scope(engine) as s:
        for channel in ("sms", "push"):
            for status in (PENDING, DEFERRED, SENT):
                s.add(
                    Delivery(
                        idempotency_key=f"{channel}-{status}",
                        customer_id=customer_id,
                        channel=channel,
                        status=status,
                        due_at=AT,
                        created_at=AT,
                    )
                )


def delivery_statuses(engine):
    with Session(engine) as s:
        return {d.idempotency_key: d.status for d in s.exec(select(Delivery))}


def count(engine, table):
    with Session(engine) as s:
        return len(s.exec(select(table)).all())


# --- signature -----------------------------------------------------------------------------------


def test_missing_or_forged_signature_is_403_and_nothing_is_recorded(client, engine):
    customer_id = customer_with_sms(engine)
    add_deliveries(engine, customer_id)
    params = twilio_params("STOP")
    signature = RequestValidator(TOKEN).compute_signature(BASE + PATH, params)
    attempts = {
        "missing": post(client, params, signature=None),
        "garbage": post(client, params, signature="bm90IGEgc2lnbmF0dXJl"),
        "tampered body": post(client, {**params, "Body": "START"}, signature=signature),
        "tampered sender": post(client, {**params, "From": "+33600000000"}, signature=signature),
        "other token": post(
            client, params, signature=RequestValidator("x").compute_signature(BASE + PATH, params)
        ),
        # signed for what the app sees behind the proxy, not the configured public URL
        "internal url": post(client, params, url="http://testserver" + PATH),
        "extra param": post(client, {**params, "Extra": "1"}, signature=signature),
    }
    assert {name: r.status_code for name, r in attempts.items()} == dict.fromkeys(attempts, 403)
    assert count(engine, InboundMessage) == 0
    assert count(engine, Suppression) == 0
    assert count(engine, ConsentEvent) == len(Purpose)  # the grants only
    assert set(delivery_statuses(engine).values()) == {PENDING, DEFERRED, SENT}
    assert "<Message>" in reply_of(post(client, params))  # the same request, correctly signed, works


def test_webhook_is_refused_when_no_auth_token_is_configured(engine, tmp_path):
    settings = Settings(
        env="test", hash_key="test-hash-key-not-secret",
        database_url=str(engine.url),
        scheduler={"enabled": False},
        migrate_on_start=False,
        public_base_url=BASE,
        outbox_dir=tmp_path / "o",
        export_dir=tmp_path / "e",
    )
    with TestClient(build_app(settings, engine)) as c:
        assert post(c, twilio_params("STOP")).status_code == 403
    assert count(engine, InboundMessage) == 0


def test_signed_request_without_from_or_sid_is_a_400_not_a_500(client, engine):
    params = {"Body": "STOP", "AccountSid": "AC1"}
    assert post(client, params).status_code == 400
    assert count(engine, InboundMessage) == 0


# --- opt-out -------------------------------------------------------------------------------------


def test_stop_withdraws_sms_consent_cancels_queued_sms_and_replies_once_in_french(client, engine):
    customer_id = customer_with_sms(engine)
    add_deliveries(engine, customer_id)
    params = twilio_params("Stop")
    xml = reply_of(post(client, params))
    assert xml.count("<Message>") == 1
    assert "désinscrit" in xml and "START" in xml
    assert delivery_statuses(engine) == {
        "sms-pending": CANCELLED,
        "sms-deferred": CANCELLED,
        "sms-sent": SENT,
        "push-pending": PENDING,
        "push-deferred": DEFERRED,
        "push-sent": SENT,
    }
    with Session(engine) as s:
        state = uc.current_consent(s, customer_id, at=datetime.now(UTC))
        assert state == {
            Purpose.SMS_MARKETING: False,
            Purpose.PUSH_MARKETING: True,
            Purpose.LOCATION_OFFERS: True,
            Purpose.STORE_WELCOME: True,  # STOP is about SMS only
            Purpose.ORDER_UPDATES: True,  # STOP is about SMS marketing; its suppression still blocks SMS
        }
        withdrawal = s.exec(select(ConsentEvent).where(ConsentEvent.granted == False)).one()  # noqa: E712
        assert withdrawal.source == "sms_keyword" and withdrawal.purpose == "sms_marketing"
        assert withdrawal.evidence["message_sid"] == params["MessageSid"]
        assert withdrawal.evidence["keyword"] == "stop" and withdrawal.recorded_at is not None
        suppression = s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms"))
        assert suppression is not None and suppression.reason == uc.SUPPRESSED_BY_KEYWORD
        inbound = s.exec(select(InboundMessage)).one()
        assert inbound.intent == "opt_out" and inbound.body is None  # body kept only for review
        assert FR_PHONE not in inbound.model_dump_json()


def test_twilio_retry_of_the_same_message_sid_changes_nothing_and_does_not_reply_again(client, engine):
    customer_with_sms(engine)
    params = twilio_params("STOP")
    assert "<Message>" in reply_of(post(client, params))
    again = reply_of(post(client, params))
    assert "<Message>" not in again
    assert count(engine, InboundMessage) == 1
    assert count(engine, ConsentEvent) == len(Purpose) + 1  # the grants + one withdrawal, not two


OPT_OUT_BODIES = [
    "STOP",
    "stop",
    "Arrêt",
    "ARRET",
    "arrete",
    "STOP SMS",
    "Désabonner",
    "desinscrire",
    "OPT-OUT",
    "opt out",
    "optout",
    "STOPALL",
    "Stop all",
    "UNSUBSCRIBE",
    "cancel",
    "end",
    "quit",
    "revoke",
    "remove",
    "  stop.  ",
]


def test_every_opt_out_keyword_opts_out_over_the_webhook(client, engine):
    customer_id = customer_with_sms(engine)
    for body in OPT_OUT_BODIES:
        assert "nouveau inscrit" in reply_of(post(client, twilio_params("START")))
        assert "désinscrit" in reply_of(post(client, twilio_params(body))), body
        with Session(engine) as s:
            assert not uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING], body


def test_fuzzy_opt_out_is_acted_on_and_stored_for_review(client, engine):
    customer_id = customer_with_sms(engine)
    xml = reply_of(post(client, twilio_params("stop merci")))
    assert "désinscrit" in xml
    with Session(engine) as s:
        assert not uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]
        inbound = s.exec(select(InboundMessage)).one()
        assert inbound.needs_review and inbound.body == "stop merci" and inbound.intent == "opt_out"
        event = s.exec(select(ConsentEvent).where(ConsentEvent.granted == False)).one()  # noqa: E712
        assert event.evidence["fuzzy"] is True


def test_stop_from_an_unknown_number_is_recorded_as_a_suppression_and_answered(client, engine):
    xml = reply_of(post(client, twilio_params("STOP", sender=US_PHONE)))
    assert "unsubscribed" in xml  # English for a US number
    with Session(engine) as s:
        assert s.get(Suppression, (phone_hash(US_PHONE, KEY), "sms")).reason == uc.SUPPRESSED_BY_KEYWORD
    xml_fr = reply_of(post(client, twilio_params("ARRET", sender="+33699999999")))
    assert "désinscrit" in xml_fr  # French for a French number


def test_stop_then_import_cannot_regrant_sms(client, engine):
    post(client, twilio_params("STOP", sender=FR_PHONE))
    with session_scope(engine) as s:
        customer, _ = uc.upsert_customer(
            s, uc.CustomerInput(crm_id="late", phone=FR_PHONE), at=AT, hash_key=KEY
        )
        with pytest.raises(uc.Suppressed):
            uc.record_consent(
                s, customer_id=customer.id, purpose="sms_marketing", granted=True, source="import", at=AT
            )


# --- opt-in and help -----------------------------------------------------------------------------


def test_start_lifts_the_keyword_suppression_and_regrants_sms(client, engine):
    customer_id = customer_with_sms(engine)
    post(client, twilio_params("STOP"))
    xml = reply_of(post(client, twilio_params("start")))
    assert "nouveau inscrit" in xml
    with Session(engine) as s:
        assert s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms")) is None
        assert uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]
        last = uc.ledger(s, customer_id)[-1]
        assert last.granted and last.source == "sms_keyword"


def test_every_opt_in_keyword_resubscribes(client, engine):
    customer_id = customer_with_sms(engine, locale="en")
    for body in ["START", "yes", "Unstop", "SUBSCRIBE", "Oui", "reprendre", " Start! "]:
        post(client, twilio_params("STOP"))
        xml = reply_of(post(client, twilio_params(body)))
        assert "subscribed again" in xml, body  # the customer's own locale beats the country code
        with Session(engine) as s:
            assert uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING], body


def test_start_after_erasure_is_refused_and_the_number_stays_suppressed(client, engine):
    customer_id = customer_with_sms(engine)
    with session_scope(engine) as s:
        erase_customer(s, customer_id, at=AT, location=SqlLocationData())
    xml = reply_of(post(client, twilio_params("START")))
    assert "effacé" in xml
    with Session(engine) as s:
        assert s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms")).reason == uc.SUPPRESSED_BY_ERASURE


def test_help_keywords_get_the_help_text_without_changing_consent(client, engine):
    customer_id = customer_with_sms(engine, locale="en-GB")
    for body in ("HELP", "info", "Aide", "help!"):
        assert "Reply STOP" in reply_of(post(client, twilio_params(body))), body
    with Session(engine) as s:
        assert uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]


def test_other_messages_get_an_empty_reply_and_no_change(client, engine):
    customer_id = customer_with_sms(engine)
    bodies = ["stopwatch", "unstoppable", "See you tomorrow", "", "🙂"]
    for body in bodies:
        assert "<Message>" not in reply_of(post(client, twilio_params(body))), body
    with Session(engine) as s:
        assert uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]
        inbound = s.exec(select(InboundMessage)).all()
        assert len(inbound) == len(bodies)
        assert all(m.intent == "none" and m.body is None and not m.needs_review for m in inbound)


def test_phone_numbers_never_reach_the_logs_in_clear(client, engine, caplog):
    caplog.set_level(logging.DEBUG)
    customer_with_sms(engine)
    for body in ("STOP", "START", "HELP", "stop merci", "hello"):
        reply_of(post(client, twilio_params(body)))
    reply_of(post(client, twilio_params("STOP", sender=US_PHONE)))
    assert "inbound sms" in caplog.text
    assert FR_PHONE not in caplog.text and US_PHONE not in caplog.text
    assert FR_PHONE[1:] not in caplog.text and US_PHONE[1:] not in caplog.text


def test_twilio_advanced_opt_out_type_is_followed_and_not_answered_twice(client, engine):
    customer_id = customer_with_sms(engine)
    # A keyword configured only in Twilio's console ("ARRETT"): Twilio blocked the number and replied.
    xml = reply_of(post(client, {**twilio_params("ARRETT"), "OptOutType": "STOP"}))
    assert "<Message>" not in xml
    with Session(engine) as s:
        assert not uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]
        assert s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms")) is not None
        assert uc.ledger(s, customer_id)[-1].evidence["keyword"] == "twilio:stop"
    assert "<Message>" not in reply_of(post(client, {**twilio_params("GO"), "OptOutType": "START"}))
    with Session(engine) as s:
        assert uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]
    # our own opt-out recognition is never weakened by a different OptOutType
    post(client, {**twilio_params("STOP"), "OptOutType": "HELP"})
    with Session(engine) as s:
        assert not uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]


def test_review_queue_lists_fuzzy_opt_outs_until_marked_reviewed(client, engine):
    customer_with_sms(engine)
    params = twilio_params("please stop it")
    post(client, params)
    post(client, twilio_params("STOP"))
    with session_scope(engine) as s:
        _, key = apikeys.create_api_key(s, name="crm", scopes={"admin"}, at=AT)
    client.headers["X-API-Key"] = key
    queue = client.get("/v1/inbound-sms", params={"needs_review": True}).json()["items"]
    assert [m["message_sid"] for m in queue] == [params["MessageSid"]]
    assert queue[0]["body"] == "please stop it" and FR_PHONE not in str(queue)
    done = client.post(f"/v1/inbound-sms/{params['MessageSid']}/reviewed")
    assert done.status_code == 200 and done.json()["needs_review"] is False
    assert client.get("/v1/inbound-sms", params={"needs_review": True}).json()["items"] == []
    assert client.post("/v1/inbound-sms/SMnope/reviewed").status_code == 404


def test_keyword_lists_come_from_settings(engine, tmp_path):
    settings = Settings(
        env="test",
        database_url=str(engine.url),
        outbox_dir=tmp_path / "outbox",
        export_dir=tmp_path / "exports",
        scheduler={"enabled": False},
        auth_required=False,
        migrate_on_start=False,
        hash_key=KEY,
        twilio={"auth_token": TOKEN},
        public_base_url=BASE,
        sms_keywords={"opt_out": ["BASTA"], "max_other_words": 0},
    )
    customer_id = customer_with_sms(engine)
    with TestClient(build_app(settings, engine)) as c:
        assert "<Message>" not in reply_of(post(c, twilio_params("stop please")))  # no fuzzy budget
        assert "<Message>" not in reply_of(post(c, twilio_params("STOP")))  # not in the configured list
        assert "désinscrit" in reply_of(post(c, twilio_params("Basta!")))
    with Session(engine) as s:
        assert not uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]
        assert len([e for e in uc.ledger(s, customer_id) if not e.granted]) == 1


# --- the suppression list for operators ------------------------------------------------------------


def test_operators_list_suppressions_masked_with_reason_and_time_including_unknown_numbers(client, engine):
    from tests.conftest import make_key_headers

    admin = make_key_headers(engine, "admin")
    assert client.get("/v1/suppressions").status_code == 401
    post(client, twilio_params("STOP", sender=US_PHONE))  # nobody we know: suppressed all the same
    customer_id = customer_with_sms(engine)
    with session_scope(engine) as s:
        erase_customer(s, customer_id, at=AT, location=SqlLocationData())
    response = client.get("/v1/suppressions", headers=admin)
    assert response.status_code == 200
    items = response.json()["items"]
    assert US_PHONE not in response.text and FR_PHONE not in response.text  # never in clear
    by_reason = {i["reason"]: i for i in items}
    assert by_reason[uc.SUPPRESSED_BY_KEYWORD]["phone_masked"] == "+14*******71"
    assert by_reason[uc.SUPPRESSED_BY_ERASURE]["phone_masked"] is None  # erasure keeps only the hash
    assert by_reason[uc.SUPPRESSED_BY_ERASURE]["created_at"].startswith("2026-03-02T10:00:00")
    one = client.get("/v1/suppressions", params={"phone": "+1 415 555 2671"}, headers=admin).json()["items"]
    assert [i["reason"] for i in one] == [uc.SUPPRESSED_BY_KEYWORD]
    erased = client.get("/v1/suppressions", params={"reason": uc.SUPPRESSED_BY_ERASURE}, headers=admin)
    assert len(erased.json()["items"]) == 1
    assert client.get("/v1/suppressions", params={"phone": "drop table"}, headers=admin).status_code == 422


# --- stop requests in plain words: sure ones act, the others wait for a person ------------------


def _sms_consent(engine, customer_id) -> bool:
    with Session(engine) as s:
        return uc.current_consent(s, customer_id, at=datetime.now(UTC))[Purpose.SMS_MARKETING]


def test_a_sure_stop_phrasing_without_a_keyword_opts_out_at_once(client, engine):
    customer_id = customer_with_sms(engine)
    xml = reply_of(post(client, twilio_params("Bonjour, ne m'envoyez plus de messages svp")))
    assert "désinscrit" in xml
    assert _sms_consent(engine, customer_id) is False
    with Session(engine) as s:
        event = s.exec(select(ConsentEvent).where(ConsentEvent.granted == False)).one()  # noqa: E712
        assert event.evidence["keyword"] == "phrase:ne_m_envoyez_plus"
        assert s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms")).reason == uc.SUPPRESSED_BY_KEYWORD


def test_a_plain_stop_request_is_queued_and_consent_untouched_until_a_person_opts_it_out(client, engine):
    from tests.conftest import make_key_headers

    admin = make_key_headers(engine, "admin")
    customer_id = customer_with_sms(engine)
    add_deliveries(engine, customer_id)
    sid = "SM" + "7" * 32
    assert "<Message" not in reply_of(post(client, twilio_params("Laissez-moi tranquille", sid=sid)))
    assert _sms_consent(engine, customer_id) is True  # untouched while it waits for a person
    queue = client.get("/v1/inbound-sms", params={"needs_review": "true"}, headers=admin).json()["items"]
    assert [(m["message_sid"], m["body"], m["keyword"]) for m in queue] == [
        (sid, "Laissez-moi tranquille", "phrase:leave_me_alone")
    ]
    waiting_before = delivery_statuses(engine)
    decided = client.post(f"/v1/inbound-sms/{sid}/decision", json={"decision": "opt_out"}, headers=admin)
    assert decided.status_code == 200, decided.text
    assert decided.json()["review_decision"] == "opt_out" and decided.json()["needs_review"] is False
    assert _sms_consent(engine, customer_id) is False
    after = delivery_statuses(engine)
    assert waiting_before["sms-pending"] == PENDING and after["sms-pending"] == CANCELLED
    assert after["sms-deferred"] == CANCELLED and after["push-pending"] == PENDING  # SMS only
    with Session(engine) as s:
        event = s.exec(select(ConsentEvent).where(ConsentEvent.granted == False)).one()  # noqa: E712
        assert event.evidence == {"message_sid": sid, "phrase": "phrase:leave_me_alone", "reviewed": True}
        assert event.recorded_by.startswith("key:")
        assert s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms")).reason == uc.SUPPRESSED_BY_KEYWORD
    again = client.post(f"/v1/inbound-sms/{sid}/decision", json={"decision": "dismiss"}, headers=admin)
    assert again.status_code == 409
    assert client.get("/v1/inbound-sms", params={"needs_review": "true"}, headers=admin).json()["items"] == []


def test_a_dismissed_reply_changes_nothing_but_the_queue(client, engine):
    from tests.conftest import make_key_headers

    admin = make_key_headers(engine, "admin")
    customer_id = customer_with_sms(engine)
    sid = "SM" + "8" * 32
    post(client, twilio_params("Plus de SMS comme ça, super offre !", sid=sid))
    decided = client.post(f"/v1/inbound-sms/{sid}/decision", json={"decision": "dismiss"}, headers=admin)
    assert decided.status_code == 200 and decided.json()["review_decision"] == "dismiss"
    assert _sms_consent(engine, customer_id) is True
    with Session(engine) as s:
        assert s.get(Suppression, (phone_hash(FR_PHONE, KEY), "sms")) is None
    bad = client.post(f"/v1/inbound-sms/{sid}/decision", json={"decision": "maybe"}, headers=admin)
    assert bad.status_code == 422
    unknown = client.post("/v1/inbound-sms/SMnope/decision", json={"decision": "dismiss"}, headers=admin)
    assert unknown.status_code == 404
