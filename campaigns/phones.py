"""Phone numbers: E.164 validation (``phonenumbers``), keyed hashing and masking for logs.

Pure: the hash key is a parameter (adapters pass ``settings.hash_key``). The keyed hash is what the
suppression list stores, so an erased customer's number can be recognised without being kept; a plain
hash of a phone number would be reversible by enumerating the numbering plan, an HMAC is not without
the key.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

# Countries whose customers get French replies when we only know the number (mainland, Monaco and the
# overseas departments/collectivities that have their own calling codes).
FRENCH_SPEAKING_REGIONS = frozenset(
    {"FR", "MC", "GP", "MQ", "GF", "RE", "YT", "PM", "BL", "MF", "NC", "PF", "WF"}
)


class InvalidPhone(ValueError):
    """The text is not a valid, dialable phone number; the message says why."""


def to_e164(raw: str, default_region: str | None = "FR") -> str:
    """Parse and validate ``raw``; return it in E.164 (``+33612345678``).

    ``default_region`` (ISO 3166 alpha-2) is used for national formats such as ``06 12 34 56 78``.
    Raises :class:`InvalidPhone` with a reason a person can act on.
    """
    text = (raw or "").strip()
    if not text:
        raise InvalidPhone("phone number is empty")
    if len(text) > 40:
        raise InvalidPhone("phone number is too long")
    region = (default_region or "").upper() or None
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException as exc:
        reason = str(exc).split(") ", 1)[-1].rstrip(".")
        raise InvalidPhone(f"phone number cannot be parsed: {reason}") from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone("phone number is not a valid number for its country")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def region_of(e164: str) -> str | None:
    """ISO region of a number (``"FR"``), or None when it cannot be told."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return None
    return phonenumbers.region_code_for_number(number) or None


def guess_locale(e164: str, default: str = "en") -> str:
    """Language for a reply to a number we know nothing else about: French for French regions."""
    return "fr" if region_of(e164) in FRENCH_SPEAKING_REGIONS else default


@dataclass(frozen=True)
class NumberPlace:
    """Where a number belongs, as far as its prefix tells: ISO country, French subdivision, IANA zone."""

    country: str | None
    subdivision: str | None
    tz: str | None


def place_of(e164: str, *, reference: datetime | None = None) -> NumberPlace:
    """Country, subdivision and time zone of a number from ``phonenumbers``' region and zone data.

    A prefix that spans several zones (US area code 208: Boise and Los Angeles) gives the westernmost:
    the zone whose clock is earliest, so a morning message is never early for anyone in the area.
    Ties and equal offsets go by name, so the choice is deterministic. ``reference`` (tz-aware) is when
    the UTC offsets are compared; by default 1 January (standard time) of 2026.

    Examples
    --------
    >>> place_of("+12125551234")
    NumberPlace(country='US', subdivision=None, tz='America/New_York')
    >>> place_of("+12085550100").tz
    'America/Los_Angeles'
    """
    from campaigns.legal_hours import phone_region, phone_zones

    country, subdivision = phone_region(e164)
    zones = phone_zones(e164)
    when = reference or datetime(2026, 1, 1, 12, tzinfo=UTC)
    tz = min(zones, key=lambda z: (when.astimezone(ZoneInfo(z)).utcoffset(), z)) if zones else None
    return NumberPlace(country, subdivision, tz)


def canonical(raw: str) -> str:
    """Best-effort canonical form for hashing a sender we cannot validate (short codes, odd input)."""
    try:
        return to_e164(raw, None)
    except InvalidPhone:
        return "".join(c for c in raw if c.isalnum() or c == "+")


def phone_hash(e164: str, key: str | bytes) -> str:
    """HMAC-SHA256 of the E.164 number under ``key`` (hex)."""
    key_bytes = key.encode() if isinstance(key, str) else key
    return hmac.new(key_bytes, e164.encode(), hashlib.sha256).hexdigest()


def mask_phone(phone: str | None) -> str:
    """``+33612345678`` → ``+33*******78``: enough to tell numbers apart in a log, not to dial."""
    if not phone:
        return "<none>"
    if len(phone) <= 5:
        return "*" * len(phone)
    return phone[:3] + "*" * (len(phone) - 5) + phone[-2:]


def mask_token(token: str | None) -> str:
    """A push token shown as its first 6 characters and length (tokens are credentials)."""
    if not token:
        return "<none>"
    return f"{token[:6]}…({len(token)})"
