"""Use case: an inbound SMS (already signature-checked) → opt-out / opt-in / help, and the reply.

- Idempotent on Twilio's ``MessageSid``: Twilio retries the same message; the retry changes nothing
  and gets no reply (we reply at most once per message).
- STOP: every customer with that number gets an ``sms_marketing`` withdrawal (source ``sms_keyword``,
  evidence: the MessageSid), their waiting SMS deliveries are cancelled in the same transaction, and
  the number's keyed hash is put on the suppression list — also when no customer has the number.
- START: lifts a STOP suppression (never an erasure one) and grants ``sms_marketing`` back.
- The reply is in the customer's language; for an unknown number, French for French regions.
- Twilio's Advanced Opt-Out adds ``OptOutType`` (STOP / START / HELP) when *it* recognised a keyword
  (support article "Track Opt-Out, Opt-In and Help Messages Using the OptOutType Parameter"). Twilio has
  then already blocked/unblocked the number and sent its own confirmation, so we follow its
  classification (our ledger must agree with the carrier-side block) and send no second reply.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from campaigns.consent import Purpose, Source
from campaigns.customers import (
    SUPPRESSED_BY_ERASURE,
    SUPPRESSED_BY_KEYWORD,
    lift_keyword_suppression,
    record_consent,
    suppress,
    suppression_of,
)
from campaigns.keywords import DEFAULT_CONFIG, Intent, KeywordConfig, KeywordMatch, match
from campaigns.phones import canonical, guess_locale, mask_phone, phone_hash
from campaigns.replies import ReplyKind, reply_text
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import Customer, InboundMessage
from campaigns.store_events import opted_out

log = logging.getLogger(__name__)

KEYWORD_WORDING_VERSION = "sms-keywords-1"
MAX_BODY = 1600  # Twilio's own limit for a concatenated SMS


class MalformedInbound(ValueError):
    """A signed request without the fields every inbound SMS has."""


@dataclass(frozen=True)
class InboundSms:
    message_sid: str
    from_number: str
    to_number: str | None
    body: str
    account_sid: str | None = None
    messaging_service_sid: str | None = None
    opt_out_type: str | None = None  # STOP | START | HELP when Twilio's Advanced Opt-Out handled it

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> InboundSms:
        """Read Twilio's form fields (``From``, ``To``, ``Body``, ``MessageSid``, …); others are ignored."""
        clean = {k: v.replace("\x00", "") for k, v in form.items()}  # PostgreSQL refuses NUL in text
        sid = (clean.get("MessageSid") or clean.get("SmsSid") or "").strip()
        sender = (clean.get("From") or "").strip()
        if not sid or not sender:
            raise MalformedInbound("an inbound SMS needs MessageSid and From")
        if len(sid) > 64 or len(sender) > 64:
            raise MalformedInbound("MessageSid or From is too long")
        return cls(
            message_sid=sid,
            from_number=sender,
            to_number=(clean.get("To") or None),
            body=(clean.get("Body") or "")[:MAX_BODY],
            account_sid=(clean.get("AccountSid") or None),
            messaging_service_sid=(clean.get("MessagingServiceSid") or None),
            opt_out_type=(clean.get("OptOutType") or "").strip().upper() or None,
        )


@dataclass(frozen=True)
class InboundOutcome:
    intent: Intent
    reply: str | None
    duplicate: bool = False
    needs_review: bool = False
    customers: int = 0
    cancelled: int = 0


_TWILIO_INTENTS = {"STOP": Intent.OPT_OUT, "START": Intent.OPT_IN, "HELP": Intent.HELP}


def classify(sms: InboundSms, config: KeywordConfig) -> KeywordMatch:
    """Our keyword match, overridden by Twilio's ``OptOutType`` when Twilio already acted on it."""
    found = match(sms.body, config)
    twilio_intent = _TWILIO_INTENTS.get(sms.opt_out_type or "")
    if twilio_intent is None or found.intent is twilio_intent:
        return found
    if found.is_opt_out and twilio_intent is not Intent.OPT_OUT:
        return found  # never let anything weaken an opt-out we recognised
    keyword = f"twilio:{sms.opt_out_type}".lower()
    return KeywordMatch(twilio_intent, keyword=keyword, needs_review=found.needs_review)


def _reply_locale(customers: list[Customer], sender: str) -> str:
    if customers:
        return customers[0].locale or "en"
    return guess_locale(sender)


def _consent(session: Session, customers: list[Customer], sms: InboundSms, found: KeywordMatch,
             *, granted: bool, at: datetime) -> int:  # fmt: skip
    cancelled = 0
    for customer in customers:
        _, n = record_consent(
            session,
            customer_id=customer.id,
            purpose=Purpose.SMS_MARKETING,
            granted=granted,
            source=Source.SMS_KEYWORD,
            at=at,
            wording=f"SMS keyword {found.keyword!r}",
            wording_version=KEYWORD_WORDING_VERSION,
            recorded_by="twilio-inbound",
            evidence={
                "message_sid": sms.message_sid,
                "keyword": found.keyword,
                "fuzzy": found.fuzzy,
                "to": sms.to_number,
                "messaging_service_sid": sms.messaging_service_sid,
            },
        )
        cancelled += n
        if not granted:  # STOP or a synonym (EN/FR): the customer opted out of SMS
            opted_out(session, customer_id=customer.id, channels=["sms"], reason="sms_keyword", at=at,
                      keyword=found.keyword)  # fmt: skip
    return cancelled


def handle_inbound_sms(
    session: Session,
    sms: InboundSms,
    *,
    at: datetime,
    hash_key: str,
    config: KeywordConfig = DEFAULT_CONFIG,
) -> InboundOutcome:
    """Apply one inbound SMS; returns what happened and the reply text (None = empty TwiML)."""
    if session.exec(select(InboundMessage.id).where(InboundMessage.message_sid == sms.message_sid)).first():
        return InboundOutcome(Intent.NONE, None, duplicate=True)
    sender = canonical(sms.from_number)
    hashed = phone_hash(sender, hash_key)
    found = classify(sms, config)
    customers = list(
        session.exec(
            select(Customer)
            .where(Customer.phone_hash == hashed)
            .where(col(Customer.erased_at).is_(None))
            .order_by(col(Customer.updated_at).desc())
        ).all()
    )
    locale = _reply_locale(customers, sender)
    row = InboundMessage(
        message_sid=sms.message_sid,
        account_sid=sms.account_sid,
        messaging_service_sid=sms.messaging_service_sid,
        to_number=sms.to_number,
        from_hash=hashed,
        from_masked=mask_phone(sender),
        customer_ids=[c.id for c in customers],
        intent=found.intent.value,
        keyword=found.keyword,
        needs_review=found.needs_review,
        body=sms.body if found.needs_review else None,
        locale=locale,
        received_at=at,
    )
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same MessageSid committed concurrently by another worker
        return InboundOutcome(Intent.NONE, None, duplicate=True)

    cancelled, kind = 0, None
    if found.intent is Intent.OPT_OUT:
        suppress(session, hashed, reason=SUPPRESSED_BY_KEYWORD, at=at, masked=mask_phone(sender))
        cancelled = _consent(session, customers, sms, found, granted=False, at=at)
        kind = ReplyKind.STOPPED
    elif found.intent is Intent.OPT_IN:
        existing = suppression_of(session, hashed)
        if existing is not None and existing.reason == SUPPRESSED_BY_ERASURE:
            kind = ReplyKind.START_REFUSED
        else:
            lift_keyword_suppression(session, hashed)
            _consent(session, customers, sms, found, granted=True, at=at)
            kind = ReplyKind.STARTED
    elif found.intent is Intent.HELP:
        kind = ReplyKind.HELP
    # With OptOutType, Twilio has already sent its own confirmation: reply once means not again.
    reply = reply_text(kind, locale) if kind is not None and sms.opt_out_type is None else None
    row.replied = reply is not None
    session.add(row)
    session.flush()
    log.info(
        "inbound sms %s from %s: %s (customers=%d, cancelled=%d, review=%s)",
        sms.message_sid, mask_phone(sender), found.intent.value, len(customers), cancelled,
        found.needs_review,
    )  # fmt: skip
    return InboundOutcome(found.intent, reply, needs_review=found.needs_review,
                          customers=len(customers), cancelled=cancelled)  # fmt: skip


# --- the review queue ----------------------------------------------------------------------------

OPT_OUT_DECISION = "opt_out"
DISMISS_DECISION = "dismiss"


class AlreadyDecided(ValueError):
    """A person already decided on this message."""


def decide_review(
    session: Session, row: InboundMessage, *, decision: str, at: datetime, decided_by: str | None
) -> int:
    """A person's decision on a queued reply; returns the waiting SMS deliveries cancelled.

    ``opt_out``: the number is suppressed (STOP's reason: START by SMS lifts it) and every customer with
    it gets an ``sms_marketing`` withdrawal (source ``sms_keyword``, evidence: the message and who read
    it), unless the reply had already opted out. ``dismiss``: nothing changes but the queue.
    """
    if decision not in (OPT_OUT_DECISION, DISMISS_DECISION):
        raise ValueError(f"decision must be {OPT_OUT_DECISION!r} or {DISMISS_DECISION!r}")
    if row.review_decision is not None or row.reviewed_at is not None:
        done = row.review_decision or "reviewed"
        raise AlreadyDecided(f"message {row.message_sid} was already reviewed ({done})")
    cancelled = 0
    if decision == OPT_OUT_DECISION and row.intent != Intent.OPT_OUT.value:
        suppress(session, row.from_hash, reason=SUPPRESSED_BY_KEYWORD, at=at, masked=row.from_masked)
        same_number = col(Customer.phone_hash) == row.from_hash
        customers = session.exec(select(Customer).where(same_number, col(Customer.erased_at).is_(None))).all()
        for customer in customers:
            _, n = record_consent(
                session, customer_id=customer.id, purpose=Purpose.SMS_MARKETING, granted=False,
                source=Source.SMS_KEYWORD, at=at, occurred_at=as_utc(row.received_at),
                wording="SMS reply read by a person as a request to stop",
                wording_version=KEYWORD_WORDING_VERSION, recorded_by=decided_by,
                evidence={"message_sid": row.message_sid, "phrase": row.keyword, "reviewed": True},
            )  # fmt: skip
            cancelled += n
            opted_out(session, customer_id=customer.id, channels=["sms"], reason="review", at=at)
    row.review_decision, row.reviewed_by, row.reviewed_at, row.needs_review = decision, decided_by, at, False
    session.add(row)
    session.flush()
    log.info("inbound sms %s reviewed: %s (cancelled=%d)", row.message_sid, decision, cancelled)
    return cancelled
