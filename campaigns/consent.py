"""Consent: per-purpose state projected from an append-only ledger, and the contact gate.

Pure: no database, no clock. Callers pass the ledger entries (any objects with ``purpose``,
``granted``, ``occurred_at`` and optionally ``recorded_at``/``seq`` — the ``ConsentEvent`` rows work
as they are) and the instant ``at`` to evaluate.

Each purpose stands alone (CNIL 2024 mobile-app recommendation: an OS location permission is not
consent, and each purpose is asked, withdrawn and proven on its own). No entry means no consent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol


class Purpose(StrEnum):
    LOCATION_OFFERS = "location_offers"
    PUSH_MARKETING = "push_marketing"
    SMS_MARKETING = "sms_marketing"
    # transactional, not marketing: "your order is ready" (campaigns.transactional); recorded as granted
    # with a customer's first order, withdrawable like any other purpose
    ORDER_UPDATES = "order_updates"
    # the store may be told when the customer arrives (first name, language, an order waiting):
    # a purpose of its own, never implied by the marketing ones
    STORE_WELCOME = "store_welcome"


_PURPOSES = {p.value: p for p in Purpose}  # str -> Purpose without the Enum constructor (hot path)


class Source(StrEnum):
    """How a grant or withdrawal reached us (the "how" of GDPR art. 7(1) proof)."""

    APP_SCREEN = "app_screen"
    SMS_KEYWORD = "sms_keyword"
    API = "api"
    IMPORT = "import"
    ADMIN = "admin"


# The marketing purpose that must be granted to use a channel.
CHANNEL_PURPOSE: Mapping[str, Purpose] = {"push": Purpose.PUSH_MARKETING, "sms": Purpose.SMS_MARKETING}

# Channels whose waiting deliveries stop when a purpose is withdrawn. Every campaign in this engine is
# location-triggered, so withdrawing location_offers stops both channels.
WITHDRAWAL_CHANNELS: Mapping[Purpose, tuple[str, ...]] = {
    Purpose.SMS_MARKETING: ("sms",),
    Purpose.PUSH_MARKETING: ("push",),
    Purpose.LOCATION_OFFERS: ("push", "sms"),
    Purpose.ORDER_UPDATES: (),  # waiting notices are skipped at send time, with the reason
    Purpose.STORE_WELCOME: (),  # no message is sent for it: arrival alerts check it as they happen
}


class LedgerEntry(Protocol):
    purpose: str
    granted: bool
    occurred_at: datetime


def _utc(value: datetime | None) -> datetime:
    if value is None:
        return datetime.min.replace(tzinfo=UTC)
    # SQLite hands back naive datetimes for tz-aware columns; they were stored as UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _order_key(entry: Any) -> tuple[datetime, datetime, int, bool]:
    # Later occurrence wins; for the same instant the later recording, then the ledger sequence; on a
    # perfect tie a withdrawal wins (``not granted`` is True for it, and True sorts last).
    return (
        _utc(entry.occurred_at),
        _utc(getattr(entry, "recorded_at", None)),
        getattr(entry, "seq", None) or 0,
        not entry.granted,
    )


def consent_state(events: Iterable[LedgerEntry], at: datetime) -> dict[Purpose, bool]:
    """Project the ledger onto the current state of every purpose.

    Parameters
    ----------
    events
        Ledger entries of ONE customer, in any order.
    at
        Instant of evaluation (tz-aware UTC). Entries that occurred after ``at`` are ignored, so the
        same ledger answers "what did we hold at the time of that send?" for an audit.

    Returns
    -------
    dict
        Every ``Purpose`` mapped to True (granted) or False (never granted, or withdrawn).

    Notes
    -----
    The latest entry by ``occurred_at`` wins, then ``recorded_at``, then ``seq``; a withdrawal wins a
    perfect tie. A withdrawal recorded late but dated earlier (a back-dated STOP) still wins over
    older grants. Unknown purposes in the ledger are ignored.
    """
    at = _utc(at)
    latest: dict[Purpose, Any] = {}
    for entry in events:
        purpose = _PURPOSES.get(entry.purpose)
        if purpose is None:
            continue
        if _utc(entry.occurred_at) > at:
            continue
        current = latest.get(purpose)
        if current is None or _order_key(entry) > _order_key(current):
            latest[purpose] = entry
    return {p: bool(latest[p].granted) if p in latest else False for p in _PURPOSES.values()}


def is_granted(events: Iterable[LedgerEntry], purpose: Purpose, at: datetime) -> bool:
    """``consent_state(events, at)[purpose]`` for one purpose, without building the whole state
    (the location gate calls it once per device on every ingest batch)."""
    at = _utc(at)
    best: Any = None
    best_key: tuple[datetime, datetime, int, bool] | None = None
    for entry in events:
        if entry.purpose != purpose.value or _utc(entry.occurred_at) > at:
            continue
        key = _order_key(entry)
        if best_key is None or key > best_key:
            best, best_key = entry, key
    return bool(best.granted) if best is not None else False


def refusal_reason(
    state: Mapping[Purpose, bool],
    *,
    channel: str,
    location_triggered: bool = True,
    suppressed: bool = False,
) -> str | None:
    """Why this customer may NOT be contacted on ``channel`` now, or None when they may.

    ``state`` comes from :func:`consent_state`; ``suppressed`` says the contact point is on the
    suppression list (SMS STOP or erasure), which beats any grant in the ledger.
    """
    purpose = CHANNEL_PURPOSE.get(channel)
    if purpose is None:
        return f"unknown_channel:{channel}"
    if location_triggered and not state.get(Purpose.LOCATION_OFFERS, False):
        return "no_consent:location_offers"
    if not state.get(purpose, False):
        return f"no_consent:{purpose.value}"
    if suppressed:
        return f"suppressed:{channel}"
    return None


def may_contact(
    events: Iterable[LedgerEntry],
    *,
    channel: str,
    at: datetime,
    location_triggered: bool = True,
    suppressed: bool = False,
) -> bool:
    """True when the ledger (at ``at``) allows a marketing message on ``channel``.

    Example
    -------
    >>> may_contact([], channel="sms", at=datetime(2026, 1, 1, tzinfo=UTC))
    False
    """
    state = consent_state(events, at)
    return (
        refusal_reason(state, channel=channel, location_triggered=location_triggered, suppressed=suppressed)
        is None
    )


def changed(state: Mapping[Purpose, bool], purpose: Purpose, granted: bool) -> bool:
    """Would recording ``granted`` for ``purpose`` change the state (imports record only changes)?"""
    return state.get(purpose, False) != granted
