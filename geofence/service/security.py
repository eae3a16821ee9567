"""Who is calling: API keys with scopes, and device credentials.

Scopes: ``ingest`` (mobile apps: post locations, register devices, manage their own consent) and
``admin`` (marketers: zones, campaigns, customers, exports). A device credential, issued when a device
registers, binds a caller to one device id: such a caller may only post fixes and consents for itself.
Twilio endpoints do not use this: they verify Twilio's signature.

Owner: access control (issue 8). The interface (``Principal``, ``require_scope``) is what routes use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request


@dataclass(frozen=True)
class Principal:
    key_id: str | None
    scopes: frozenset[str] = field(default_factory=frozenset)
    device_id: str | None = None  # set when the caller authenticated as one device

    def may_act_for_device(self, device_id: str) -> bool:
        """A device-bound caller may act only for its own device; an unbound ingest/admin key for any."""
        return self.device_id is None or self.device_id == device_id


OPEN_PRINCIPAL = Principal(key_id=None, scopes=frozenset({"ingest", "admin"}))


def require_scope(scope: str) -> Callable[[Request], Principal]:
    """Dependency factory: the request must carry a credential with ``scope``."""

    def dependency(request: Request) -> Principal:
        runtime = request.app.state.runtime
        if not runtime.settings.auth_required:
            return OPEN_PRINCIPAL
        authenticate = runtime.services.get("authenticate")
        if authenticate is None:
            return OPEN_PRINCIPAL
        return authenticate(request, scope)  # type: ignore[no-any-return]

    return dependency
