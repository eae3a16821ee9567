"""Use cases: customers, devices, the consent ledger and the SMS suppression list.

Each function takes the caller's ``Session`` (it flushes, never commits: the caller owns the
transaction, so an opt-out and the cancellation of queued work commit together) and ``at``, the
instant of the request (tz-aware UTC). The decisions themselves are pure, in ``campaigns.consent``.

Errors are ``CustomerError`` subclasses whose message is safe to show (no phone number in clear).

This module holds the customer and device writes; the rest lives beside it and is re-exported here
(the service's routes call every use case as ``uc.<name>``): input and errors in
``campaigns.customer_input``, id lookups in ``campaigns.customer_lookup``, the suppression list in
``campaigns.suppression_list`` and the consent ledger in ``campaigns.consent_ledger``.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session

from campaigns.consent_ledger import current_consent, ledger, location_consented_devices, record_consent
from campaigns.customer_input import (
    CustomerError,
    CustomerInput,
    NotFound,
    Suppressed,
    storable,
    valid_attributes,
    valid_country,
    valid_locale,
    valid_text,
    valid_tz,
)
from campaigns.customer_lookup import customer_of_device, find_by_crm_id, get_customer, get_device
from campaigns.phones import InvalidPhone, mask_token, phone_hash, place_of, to_e164
from campaigns.storage.customers import Customer, Device
from campaigns.suppression_list import (
    SUPPRESSED_BY_ERASURE,
    SUPPRESSED_BY_KEYWORD,
    lift_keyword_suppression,
    suppress,
    suppression_of,
)

__all__ = [
    "PLATFORMS",
    "SUPPRESSED_BY_ERASURE",
    "SUPPRESSED_BY_KEYWORD",
    "CustomerError",
    "CustomerInput",
    "NotFound",
    "Suppressed",
    "current_consent",
    "customer_of_device",
    "find_by_crm_id",
    "get_customer",
    "get_device",
    "ledger",
    "lift_keyword_suppression",
    "location_consented_devices",
    "record_consent",
    "refresh_push_token",
    "register_device",
    "set_cadence",
    "suppress",
    "suppression_of",
    "upsert_customer",
    "valid_tz",
]

log = logging.getLogger(__name__)

PLATFORMS = frozenset({"ios", "android"})


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
    crm_id = valid_text(data.crm_id, "crm_id", 128)
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
        customer.first_name = valid_text(data.first_name, "first_name", 100)
    if data.locale is not None:
        customer.locale = valid_locale(data.locale)
    if data.tz is not None:
        customer.tz = valid_tz(data.tz)
    if data.subdivision is not None:
        customer.subdivision = valid_text(data.subdivision, "subdivision", 16)
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
        push_token = valid_text(push_token, "push_token", 4096) or ""
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
        device.app_version = valid_text(app_version, "app_version", 64)
    device.updated_at = at
    session.add(device)
    session.flush()
    log.info("device %s registered (token %s)", device_id[:64], mask_token(device.push_token))
    return device, created


def refresh_push_token(session: Session, device_id: str, push_token: str, *, at: datetime) -> Device:
    """FCM rotates tokens: store the new one and mark it live again."""
    push_token = valid_text(push_token, "push_token", 4096) or ""
    if not push_token:
        raise CustomerError("push_token is empty")
    device = get_device(session, device_id)
    device.push_token, device.push_token_active = push_token, True
    device.updated_at = at
    session.add(device)
    session.flush()
    log.info("device %s token refreshed (%s)", device_id[:64], mask_token(push_token))
    return device
