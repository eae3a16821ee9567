"""Tables: API keys (hashed; the secret is shown once, when the key is created).

Owner: access control (issue 8). Device credentials are not here: their hash lives on
``devices.credential_hash`` so erasing a device erases its credential with it.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from geofence.service.tables._types import new_id, utc_column


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_keys"

    id: str = Field(default_factory=new_id, primary_key=True)  # public: part of the token, shown in lists
    name: str = Field(index=True)
    scopes: str  # space-separated, e.g. "ingest" or "admin ingest"
    secret_hash: str  # sha256 hex of the whole token (the token carries 256 random bits)
    created_at: datetime = utc_column(nullable=False)
    revoked_at: datetime | None = utc_column()
    last_used_at: datetime | None = utc_column()

    def scope_set(self) -> frozenset[str]:
        return frozenset(self.scopes.split())
