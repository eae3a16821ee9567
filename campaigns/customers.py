"""Use cases: customers, devices, the consent ledger and the SMS suppression list.

Each function takes the caller's ``Session`` (it flushes, never commits: the caller owns the
transaction, so an opt-out and the cancellation of queued work commit together) and ``at``, the
instant of the request (tz-aware UTC). The decisions themselves are pure, in ``campaigns.consent``.

Errors are ``CustomerError`` subclasses whose message is safe to show (no phone number in clear).
"""

from __future__ import annotations

import logging
import math
import re
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
from sqlalchemy import String, any_, bindparam, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session, col, select

from campaigns.cancellation import cancel_waiting_deliveries
from campaigns.consent import WITHDRAWAL_CHANNELS, Purpose, Source, consent_state, is_granted
from campaigns.phones import InvalidPhone, mask_token, phone_hash, place_of, to_e164
from campaigns.storage.customers import ConsentEvent, Customer, Device, Suppression
from campaigns.store_events import consent_changed

log = logging.getLogger(__name__)

SUPPRESSED_BY_KEYWORD = "sms_keyword"
SUPPRESSED_BY_ERASURE = "erased"
PLATFORMS = frozenset({"ios", "android"})
MAX_ATTRIBUTES = 50
MAX_TEXT = 200
MAX_FUTURE_SKEW = timedelta(minutes=5)  # a phone's clock may run a little ahead
EARLIEST_CONSENT = datetime(2000, 1, 1, tzinfo=UTC)  # older dates are typos (and overflow some drivers)
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})?$")


class CustomerError(ValueError):
    """Bad input for a use case; the message says what to fix."""


class NotFound(CustomerError, LookupError):
    pass


class Suppressed(CustomerError):
    """The number opted out by SMS (text START to resume) or was erased: no SMS grant is possible."""


@dataclass(frozen=True)
class CustomerInput:
    """Fields a caller may set; None leaves a stored value unchanged."""

    crm_id: str | None = None
    phone: str | None = None
    first_name: str | None = None
    locale: str | None = None
    tz: str | None = None
    country: str | None = None
    subdivision: str | None = None
    attributes: Mapping[str, Any] | None = None


# --- validation ----------------------------------------------------------------------------------


def storable(value: str, what: str) -> str:
    """Refuse text a database cannot store (NUL is rejected by PostgreSQL; lone surrogates by UTF-8)."""
    if "\x00" in value:
        raise CustomerError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CustomerError(f"{what} is not valid Unicode text") from None
    return value


def _text(value: str | None, what: str, max_len: int = MAX_TEXT) -> str | None:
    if value is None:
        return None
    value = storable(value, what).strip()
    if len(value) > max_len:
        raise CustomerError(f"{what} is longer than {max_len} characters")
    return value or None


def valid_tz(tz: str) -> str:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise CustomerError(f"unknown IANA time zone {tz[:64]!r}") from exc
    return tz


def valid_country(country: str) -> str:
    code = country.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise CustomerError(f"unknown country code {country[:8]!r} (ISO 3166 alpha-2 expected)")
    return code


def valid_locale(locale: str) -> str:
    if not _LOCALE.match(locale):
        raise CustomerError(f"locale {locale[:20]!r} is not a language tag such as 'fr' or 'en-US'")
    return locale.replace("_", "-")


def valid_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    if len(attributes) > MAX_ATTRIBUTES:
        raise CustomerError(f"at most {MAX_ATTRIBUTES} attributes")
    clean: dict[str, Any] = {}
    for key, value in attributes.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise CustomerError("attribute names are 1..64 characters")
        storable(key, "an attribute name")
        if value is not None and not isinstance(value, str | int | float | bool):
            raise CustomerError(f"attribute {key!r} must be a string, number, boolean or null")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise CustomerError(f"attribute {key!r} is longer than {MAX_TEXT} characters")
        if isinstance(value, str):
            storable(value, f"attribute {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise CustomerError(f"attribute {key!r} must be a finite number")
        clean[key] = value
    return clean


# --- customers -----------------------------------------------------------------------------------


def get_customer(session: Session, customer_id: str, *, allow_erased: bool = False) -> Customer:
    customer = session.get(Customer, storable(customer_id, "customer id"))
    if customer is None or (customer.erased_at is not None and not allow_erased):
        raise NotFound(f"unknown customer {customer_id[:64]!r}")
    return customer


def find_by_crm_id(session: Session, crm_id: str) -> Customer | None:
    return session.exec(select(Customer).where(Customer.crm_id == crm_id)).first()


def upsert_customer(
    session: Session,
    data: CustomerInput,
    *,
    at: datetime,
    hash_key: str,
    customer_id: str | None = None,
) -> tuple[Customer, bool]:
    """Create or update a customer (matched by ``customer_id``, else by ``crm_id``).

    Returns the row and whether it was created. The phone is validated and stored in E.164 with its
    keyed hash (the hash is what suppression matching uses).
    """
    crm_id = _text(data.crm_id, "crm_id", 128)
    if customer_id is not None:
        customer: Customer | None = get_customer(session, customer_id)
    else:
        customer = find_by_crm_id(session, crm_id) if crm_id else None
    created = customer is None
    if customer is None:
        customer = Customer(created_at=at)
    if crm_id is not None and crm_id != customer.crm_id:
        other = find_by_crm_id(session, crm_id) if not created else None
        if other is not None and other.id != customer.id:
            raise CustomerError(f"crm_id {crm_id!r} belongs to another customer")
        customer.crm_id = crm_id
    if data.country is not None:
        customer.country = valid_country(data.country)
    if data.phone is not None:
        if data.phone.strip():
            try:
                e164 = to_e164(data.phone, customer.country)
            except InvalidPhone as exc:
                raise CustomerError(str(exc)) from exc
            customer.phone_e164, customer.phone_hash = e164, phone_hash(e164, hash_key)
        else:
            customer.phone_e164 = customer.phone_hash = None
    if created and customer.phone_e164:
        _place_from_number(customer, data)
    if data.first_name is not None:
        customer.first_name = _text(data.first_name, "first_name", 100)
    if data.locale is not None:
        customer.locale = valid_locale(data.locale)
    if data.tz is not None:
        customer.tz = valid_tz(data.tz)
    if data.subdivision is not None:
        customer.subdivision = _text(data.subdivision, "subdivision", 16)
    if data.attributes is not None:
        customer.attributes = valid_attributes(data.attributes)
    customer.updated_at = at
    session.add(customer)
    session.flush()
    return customer, created


def _place_from_number(customer: Customer, data: CustomerInput) -> None:
    """A new customer's country, time zone and subdivision from the number, where not given: the table's
    defaults (France, Europe/Paris) would judge a +1 customer in Paris time."""
    assert customer.phone_e164 is not None
    place = place_of(customer.phone_e164)
    if data.country is None and place.country and len(place.country) == 2:
        customer.country = place.country
    if data.tz is None and place.tz:
        customer.tz = place.tz
    if data.subdivision is None and place.subdivision:
        customer.subdivision = place.subdivision


def set_cadence(
    session: Session, customer_id: str, *, per_day: int | None, per_week: int | None, at: datetime
) -> Customer:
    """Store the customer's chosen cadence (None = no personal limit; the send decision honours it)."""
    for value, what in ((per_day, "max_offers_per_day"), (per_week, "max_offers_per_week")):
        if value is not None and not 0 <= value <= 1000:
            raise CustomerError(f"{what} must be between 0 and 1000")
    if per_day is not None and per_week is not None and per_day > per_week:
        raise CustomerError("max_offers_per_day cannot exceed max_offers_per_week")
    customer = get_customer(session, customer_id)
    customer.max_offers_per_day, customer.max_offers_per_week = per_day, per_week
    customer.updated_at = at
    session.add(customer)
    session.flush()
    return customer


# --- devices -------------------------------------------------------------------------------------


def register_device(
    session: Session,
    *,
    device_id: str,
    platform: str,
    at: datetime,
    customer_id: str | None = None,
    push_token: str | None = None,
    app_version: str | None = None,
) -> tuple[Device, bool]:
    """Create or update a device; a device without a customer gets a new one (consent needs a person).

    Returns the device and whether it was created.
    """
    if platform not in PLATFORMS:
        raise CustomerError(f"platform must be one of {sorted(PLATFORMS)}")
    storable(device_id, "device_id")
    if push_token is not None:
        push_token = _text(push_token, "push_token", 4096) or ""
    device = session.get(Device, device_id)
    created = device is None
    if customer_id is not None:
        get_customer(session, customer_id)
    elif device is not None and device.customer_id is not None:
        customer_id = device.customer_id
    else:
        customer = Customer(created_at=at, updated_at=at)
        session.add(customer)
        session.flush()
        customer_id = customer.id
    if device is None:
        device = Device(id=device_id, created_at=at)
    device.customer_id = customer_id
    device.platform = platform
    if push_token is not None:
        device.push_token, device.push_token_active = push_token or None, bool(push_token)
    if app_version is not None:
        device.app_version = _text(app_version, "app_version", 64)
    device.updated_at = at
    session.add(device)
    session.flush()
    log.info("device %s registered (token %s)", device_id[:64], mask_token(device.push_token))
    return device, created


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, storable(device_id, "device id"))
    if device is None:
        raise NotFound(f"unknown device {device_id[:64]!r}")
    return device


def refresh_push_token(session: Session, device_id: str, push_token: str, *, at: datetime) -> Device:
    """FCM rotates tokens: store the new one and mark it live again."""
    push_token = _text(push_token, "push_token", 4096) or ""
    if not push_token:
        raise CustomerError("push_token is empty")
    device = get_device(session, device_id)
    device.push_token, device.push_token_active = push_token, True
    device.updated_at = at
    session.add(device)
    session.flush()
    log.info("device %s token refreshed (%s)", device_id[:64], mask_token(push_token))
    return device


def customer_of_device(session: Session, device_id: str) -> Customer:
    device = get_device(session, device_id)
    if device.customer_id is None:
        raise NotFound(f"device {device_id[:64]!r} is not linked to a customer")
    return get_customer(session, device.customer_id)


# --- suppression ---------------------------------------------------------------------------------


def suppression_of(session: Session, hashed_phone: str | None, channel: str = "sms") -> Suppression | None:
    if hashed_phone is None:
        return None
    return session.get(Suppression, (hashed_phone, channel))


def suppress(
    session: Session, hashed_phone: str, *, reason: str, at: datetime, channel: str = "sms",
    masked: str | None = None,
) -> None:
    """Add the number to the suppression list; an erasure suppression is never downgraded, and keeps no
    masked number."""
    row = suppression_of(session, hashed_phone, channel)
    if reason == SUPPRESSED_BY_ERASURE:
        masked = None
    if row is None:
        session.add(Suppression(phone_hash=hashed_phone, channel=channel, reason=reason, created_at=at,
                                phone_masked=masked))
    elif reason == SUPPRESSED_BY_ERASURE and row.reason != SUPPRESSED_BY_ERASURE:
        row.reason, row.created_at, row.phone_masked = reason, at, None
        session.add(row)
    session.flush()


def lift_keyword_suppression(session: Session, hashed_phone: str, channel: str = "sms") -> bool:
    """Remove a STOP suppression (after START). Erasure suppressions stay. True if one was lifted."""
    row = suppression_of(session, hashed_phone, channel)
    if row is None or row.reason != SUPPRESSED_BY_KEYWORD:
        return False
    session.delete(row)
    session.flush()
    return True


# --- consent ledger ------------------------------------------------------------------------------


def ledger(session: Session, customer_id: str) -> list[ConsentEvent]:
    """The customer's ledger, oldest first."""
    rows = session.exec(
        select(ConsentEvent)
        .where(ConsentEvent.customer_id == customer_id)
        .order_by(col(ConsentEvent.occurred_at), col(ConsentEvent.recorded_at), col(ConsentEvent.seq))
    ).all()
    return list(rows)


def current_consent(session: Session, customer_id: str, *, at: datetime) -> dict[Purpose, bool]:
    """State of every purpose now; ``sms_marketing`` is False while the number is suppressed."""
    customer = get_customer(session, customer_id, allow_erased=True)
    state = consent_state(ledger(session, customer_id), at)
    if state[Purpose.SMS_MARKETING] and suppression_of(session, customer.phone_hash) is not None:
        state[Purpose.SMS_MARKETING] = False
    return state


def _next_seq(session: Session, customer_id: str) -> int:
    top = session.exec(
        select(func.max(ConsentEvent.seq)).where(ConsentEvent.customer_id == customer_id)
    ).one()
    return int(top or 0) + 1


def record_consent(
    session: Session,
    *,
    customer_id: str,
    purpose: Purpose | str,
    granted: bool,
    source: Source | str,
    at: datetime,
    occurred_at: datetime | None = None,
    wording: str | None = None,
    wording_version: str | None = None,
    recorded_by: str | None = None,
    evidence: Mapping[str, Any] | None = None,
    seq: int | None = None,
) -> tuple[ConsentEvent, int]:
    """Append a grant or withdrawal; a withdrawal cancels the waiting deliveries it concerns.

    Returns the ledger row and the number of deliveries cancelled (same transaction as the row).
    Raises ``Suppressed`` for an SMS grant to a suppressed number (only START by SMS lifts a STOP).
    ``seq`` lets a caller that already read the ledger skip the next-sequence query.
    """
    try:
        purpose, source = Purpose(purpose), Source(source)
    except ValueError as exc:
        raise CustomerError(str(exc)) from exc
    occurred_at = occurred_at or at
    if occurred_at.tzinfo is None:
        raise CustomerError("occurred_at needs a time zone offset")
    if occurred_at > at + MAX_FUTURE_SKEW:
        raise CustomerError("occurred_at is in the future")
    if occurred_at < EARLIEST_CONSENT:
        raise CustomerError("occurred_at is implausibly old")
    customer = get_customer(session, customer_id)
    if granted and purpose is Purpose.SMS_MARKETING and source is not Source.SMS_KEYWORD:
        row = suppression_of(session, customer.phone_hash)
        if row is not None:
            raise Suppressed(
                "this number was erased: SMS marketing cannot be re-enabled"
                if row.reason == SUPPRESSED_BY_ERASURE
                else "this number opted out by SMS: the customer must text START to resume"
            )
    event = ConsentEvent(
        seq=seq if seq is not None else _next_seq(session, customer_id),
        customer_id=customer_id,
        purpose=purpose.value,
        granted=granted,
        occurred_at=occurred_at,
        recorded_at=at,
        source=source.value,
        wording=_text(wording, "wording", 2000),
        wording_version=_text(wording_version, "wording_version", 64),
        recorded_by=_text(recorded_by, "recorded_by", 128),
        evidence=valid_attributes(evidence or {}),
    )
    session.add(event)
    session.flush()
    cancelled = 0
    if not granted:
        cancelled = cancel_waiting_deliveries(
            session,
            customer_id=customer_id,
            channels=WITHDRAWAL_CHANNELS[purpose],
            reason=f"consent_withdrawn:{purpose.value}",
            at=at,
            marketing_only=True,
        )
    if not granted and purpose is Purpose.STORE_WELCOME:
        from campaigns.arrivals import withdraw_arrivals  # (arrivals reads the ledger this writes)

        withdraw_arrivals(session, customer_id)
    consent_changed(session, customer_id=customer_id, purpose=purpose.value, granted=granted,
                    source=source.value, consent_id=event.id, cancelled=cancelled, at=at)  # fmt: skip
    return event, cancelled


def _member_of(column: Any, values: set[str], session: Session) -> Any:
    """``column IN values``; on PostgreSQL one array parameter (``= ANY(:ids)``) instead of one bind
    per value, which costs more to build and plan than the query itself for 1,000 device ids."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        return column == any_(bindparam("member_ids", list(values), type_=ARRAY(String)))
    return column.in_(values)


def location_consented_devices(session: Session, device_ids: Iterable[str], *, at: datetime) -> set[str]:
    """The devices among ``device_ids`` whose customer holds ``location_offers`` or ``store_welcome``
    now: the two purposes for which a position is processed (offers near a zone; the store told of an
    arrival). Campaigns still require ``location_offers`` for every location-triggered message.

    On the ingest hot path: one query returning plain rows (no ORM objects), projected in Python.
    """
    ids = set(device_ids)
    if not ids:
        return set()
    rows = session.execute(
        select(
            col(Device.id).label("device_id"),
            col(ConsentEvent.purpose),
            col(ConsentEvent.granted),
            col(ConsentEvent.occurred_at),
            col(ConsentEvent.recorded_at),
            col(ConsentEvent.seq),
        )
        .join(ConsentEvent, col(ConsentEvent.customer_id) == col(Device.customer_id))
        .where(_member_of(col(Device.id), ids, session))
        # No join on customers: erasure deletes the devices and appends withdrawals to the ledger.
        # No SQL filter on purpose: with one, planners drive the join from the (unselective) purpose
        # index and read the whole ledger; consent_state ignores the other purposes anyway.
    ).all()
    ledgers: dict[str, list[Any]] = {}
    for row in rows:
        ledgers.setdefault(row.device_id, []).append(row)
    return {
        d for d, entries in ledgers.items()
        if is_granted(entries, Purpose.LOCATION_OFFERS, at) or is_granted(entries, Purpose.STORE_WELCOME, at)
    }
