"""Tables: customers, their devices, the append-only consent ledger, the suppression list and inbound SMS."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from campaigns.storage.columns import json_column, new_id, utc_column

__all__ = ["Customer", "Device", "ConsentEvent", "Suppression", "InboundMessage"]


class Customer(SQLModel, table=True):
    __tablename__ = "customers"

    id: str = Field(default_factory=new_id, primary_key=True)
    crm_id: str | None = Field(default=None, index=True, unique=True)
    phone_e164: str | None = Field(default=None, index=True)
    phone_hash: str | None = Field(default=None, index=True)  # keyed hash, for suppression matching
    locale: str = "fr"
    tz: str = "Europe/Paris"
    country: str = "FR"
    subdivision: str | None = None  # e.g. "57" (Moselle) for holiday rules
    first_name: str | None = None
    attributes: dict[str, Any] = json_column()
    max_offers_per_day: int | None = None  # the customer's chosen cadence
    max_offers_per_week: int | None = None
    erased_at: datetime | None = utc_column()
    created_at: datetime | None = utc_column()
    updated_at: datetime | None = utc_column()


class Device(SQLModel, table=True):
    __tablename__ = "devices"

    id: str = Field(primary_key=True)  # the app's device id, as posted with fixes
    customer_id: str | None = Field(default=None, foreign_key="customers.id", index=True)
    platform: str = "android"  # ios | android
    push_token: str | None = None
    push_token_active: bool = True
    app_version: str | None = None
    credential_hash: str | None = None  # device credential issued at registration (issue 8)
    created_at: datetime | None = utc_column()
    updated_at: datetime | None = utc_column()


class ConsentEvent(SQLModel, table=True):
    """Append-only: a grant or a withdrawal, with its proof. Never updated, never deleted (erasure
    anonymises the customer, not the ledger's existence)."""

    __tablename__ = "consent_events"

    id: str = Field(default_factory=new_id, primary_key=True)
    seq: int | None = Field(default=None, index=True)
    customer_id: str | None = Field(default=None, index=True)
    purpose: str = Field(index=True)  # location_offers | push_marketing | sms_marketing
    granted: bool
    occurred_at: datetime = utc_column(nullable=False)
    recorded_at: datetime = utc_column(nullable=False)
    source: str  # app_screen | sms_keyword | api | import | admin
    wording: str | None = None
    wording_version: str | None = None
    recorded_by: str | None = None
    evidence: dict[str, Any] = json_column()


class Suppression(SQLModel, table=True):
    """Numbers that must never receive marketing, by keyed hash (survives erasure and re-import)."""

    __tablename__ = "suppressions"

    phone_hash: str = Field(primary_key=True)
    channel: str = Field(default="sms", primary_key=True)
    reason: str
    created_at: datetime = utc_column(nullable=False)


class InboundMessage(SQLModel, table=True):
    """One inbound SMS as Twilio posted it, kept once per ``MessageSid`` (Twilio retries the same sid).

    The body is kept only when the message needs a human look (a fuzzy opt-out, or an opt-out word in a
    longer text); the sender is stored as a keyed hash and a masked form, never in clear.
    """

    __tablename__ = "inbound_messages"

    id: str = Field(default_factory=new_id, primary_key=True)
    message_sid: str = Field(unique=True, index=True)
    account_sid: str | None = None
    messaging_service_sid: str | None = None
    to_number: str | None = None  # our sender number / short code, not personal data
    from_hash: str = Field(index=True)
    from_masked: str | None = None
    customer_ids: list[str] = json_column(list)
    intent: str  # opt_out | opt_in | help | none
    keyword: str | None = None
    needs_review: bool = Field(default=False, index=True)
    reviewed_at: datetime | None = utc_column()
    body: str | None = None  # only when needs_review
    locale: str | None = None  # language of the reply
    replied: bool = False
    received_at: datetime = utc_column(nullable=False, index=True)
