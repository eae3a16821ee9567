"""Use cases for credentials: API keys (create, revoke, list, verify) and device credentials.

Tokens carry 256 random bits, so a plain SHA-256 of the token is a safe thing to store (no slow KDF
needed: nothing to brute-force) and lets us compare in constant time. The token names its record so a
lookup is one primary-key read:

- API key: ``gfk_<key id>_<64 hex>``
- device credential: ``gfd_<base64url(device id)>.<64 hex>``

The prefixes also let secret scanners recognise a leaked token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from geofence.service.tables._types import as_utc, new_id
from geofence.service.tables.customers import Device
from geofence.service.tables.keys import ApiKey

SCOPES = frozenset({"ingest", "admin"})
API_KEY_PREFIX = "gfk_"
DEVICE_TOKEN_PREFIX = "gfd_"
MAX_TOKEN_CHARS = 512  # anything longer is not ours; refuse before hashing
LAST_USED_PRECISION = timedelta(minutes=1)
_KEY_ID = re.compile(r"[0-9a-f]{32}")  # write last_used_at at most this often per key


@dataclass(frozen=True)
class ApiKeyInfo:
    """What may be shown about a key: never its secret nor its hash."""

    id: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class VerifiedKey:
    id: str
    scopes: frozenset[str]


def is_key_id(text: str) -> bool:
    return _KEY_ID.fullmatch(text) is not None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiKey) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row.id,
        name=row.name,
        scopes=tuple(sorted(row.scope_set())),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        revoked_at=as_utc(row.revoked_at),
        last_used_at=as_utc(row.last_used_at),
    )


def create_api_key(session: Session, *, name: str, scopes: set[str], at: datetime) -> tuple[ApiKeyInfo, str]:
    """Create a key; returns its public info and the token, which is never retrievable again."""
    unknown = set(scopes) - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {sorted(SCOPES)}; got {sorted(scopes)}")
    if not name.strip():
        raise ValueError("a key needs a name (who or what uses it)")
    key_id = new_id()
    token = f"{API_KEY_PREFIX}{key_id}_{secrets.token_hex(32)}"
    row = ApiKey(
        id=key_id, name=name.strip(), scopes=" ".join(sorted(scopes)), secret_hash=_digest(token),
        created_at=at,
    )
    session.add(row)
    session.flush()
    return _info(row), token


def revoke_api_key(session: Session, key_id: str, *, at: datetime) -> ApiKeyInfo | None:
    """Revoke a key (idempotent: an already revoked key keeps its first revocation time)."""
    row = session.get(ApiKey, key_id)
    if row is None:
        return None
    if row.revoked_at is None:
        row.revoked_at = at
        session.add(row)
        session.flush()
    return _info(row)


def list_api_keys(session: Session, *, include_revoked: bool = True) -> list[ApiKeyInfo]:
    query = select(ApiKey).order_by(col(ApiKey.created_at), col(ApiKey.id))
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    return [_info(row) for row in session.exec(query)]


def verify_api_key(session: Session, token: str, *, at: datetime) -> VerifiedKey | None:
    """The key a token belongs to, or None (unknown, malformed, wrong secret or revoked).

    Records ``last_used_at`` (at most once a minute) in the caller's transaction.
    """
    if not token.startswith(API_KEY_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        return None
    key_id, sep, _secret = token[len(API_KEY_PREFIX) :].partition("_")
    if not sep or not _KEY_ID.fullmatch(key_id):
        return None
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.secret_hash, _digest(token)):
        return None
    last_used = as_utc(row.last_used_at)
    if last_used is None or at - last_used >= LAST_USED_PRECISION:
        session.execute(update(ApiKey).where(col(ApiKey.id) == row.id).values(last_used_at=at))
    return VerifiedKey(id=row.id, scopes=row.scope_set())


def issue_device_credential(session: Session, device_id: str) -> str:
    """Issue (or rotate) the credential of an existing device; returns the token to hand to the app once.

    Stores only its hash on ``Device.credential_hash`` in the caller's transaction. Issuing again
    invalidates the previous credential.
    """
    device = session.get(Device, device_id)
    if device is None:
        raise LookupError(f"unknown device {device_id!r}")
    encoded = base64.urlsafe_b64encode(device_id.encode()).decode().rstrip("=")
    token = f"{DEVICE_TOKEN_PREFIX}{encoded}.{secrets.token_hex(32)}"
    device.credential_hash = _digest(token)
    session.add(device)
    session.flush()
    return token


def device_id_of_token(token: str) -> str | None:
    """The device id a device token claims (unverified), or None when malformed."""
    if not token.startswith(DEVICE_TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        return None
    encoded, sep, secret = token[len(DEVICE_TOKEN_PREFIX) :].rpartition(".")
    if not sep or not encoded or not secret:
        return None
    try:
        device_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # PostgreSQL text cannot hold NUL and no device id holds control characters: refuse, don't query
    return device_id if device_id and device_id.isprintable() else None


def verify_device_credential(session: Session, token: str) -> str | None:
    """The device id the token proves, or None."""
    device_id = device_id_of_token(token)
    if device_id is None:
        return None
    device = session.get(Device, device_id)
    if device is None or not device.credential_hash:
        return None
    if not hmac.compare_digest(device.credential_hash, _digest(token)):
        return None
    return device_id


# --- device link tokens: the retailer's back end vouches that a phone belongs to one customer ---------

LINK_TOKEN_PREFIX = "gfl_"
_LINK_PURPOSE = b"geofence device-link token v1"


def _link_signature(key: str, customer_id: str, expires_s: int) -> str:
    # a key derived for this purpose only: a link token's MAC can never be a phone hash or vice versa
    purpose_key = hmac.new(key.encode(), _LINK_PURPOSE, hashlib.sha256).digest()
    message = f"{customer_id}\n{expires_s}".encode()
    return hmac.new(purpose_key, message, hashlib.sha256).hexdigest()


def issue_link_token(customer_id: str, *, key: str, at: datetime, ttl: timedelta) -> tuple[str, datetime]:
    """A token proving, until it expires, that the bearer's device may be linked to ``customer_id``.

    Stateless: an HMAC-SHA256 (under a key derived from ``key``, the deployment's hash key) of the
    customer id and the expiry, so nothing is stored and a token cannot be altered to name another
    customer or live longer. Returns the token and its expiry.
    """
    expires_s = int((at + ttl).timestamp())
    encoded = base64.urlsafe_b64encode(customer_id.encode()).decode().rstrip("=")
    token = f"{LINK_TOKEN_PREFIX}{encoded}.{expires_s}.{_link_signature(key, customer_id, expires_s)}"
    return token, datetime.fromtimestamp(expires_s, tz=at.tzinfo)


def verify_link_token(token: str, *, key: str, at: datetime) -> str | None:
    """The customer id a link token vouches for, or None (malformed, forged, or expired at ``at``)."""
    if not token.startswith(LINK_TOKEN_PREFIX) or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token[len(LINK_TOKEN_PREFIX) :].split(".")
    if len(parts) != 3 or not parts[0] or not parts[1].isdigit() or not parts[2]:
        return None
    encoded, expires, signature = parts
    try:
        customer_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    expires_s = int(expires)
    if not hmac.compare_digest(signature, _link_signature(key, customer_id, expires_s)):
        return None
    return customer_id if at.timestamp() < expires_s else None
