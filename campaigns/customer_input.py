"""What a caller may send to the customer use cases, how it is checked, and the errors they raise.

``CustomerInput`` and the validators (text a database can store, IANA time zones, country codes,
language tags, free-form attributes) are pure: no session, no clock. Kept apart from the use cases so
the customer, device and consent-ledger modules share one definition of valid input and one error
taxonomy, whose messages are safe to show (no phone number in clear).
"""

from __future__ import annotations

import math
import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers

MAX_ATTRIBUTES = 50
MAX_TEXT = 200
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


def storable(value: str, what: str) -> str:
    """Refuse text a database cannot store (NUL is rejected by PostgreSQL; lone surrogates by UTF-8)."""
    if "\x00" in value:
        raise CustomerError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CustomerError(f"{what} is not valid Unicode text") from None
    return value


def valid_text(value: str | None, what: str, max_len: int = MAX_TEXT) -> str | None:
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
