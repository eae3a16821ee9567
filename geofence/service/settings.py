"""Settings: one object, read from GEOFENCE_* environment variables (nested groups use ``__``).

No module-level instance: ``create_app(settings)`` takes one, and ``get_settings()`` is cached for the
CLI and the uvicorn factory. Tests build ``Settings(...)`` directly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_HASH_KEY = "local-development-only-key"
# Values that mean "not configured": the default, and what deploy/.env.example ships.
_PLACEHOLDER_SECRETS = frozenset({PLACEHOLDER_HASH_KEY, "change-me", "changeme", ""})


class FenceDefaults(BaseModel):
    """Presence policy defaults; a zone's own fence settings override them."""

    dwell_after_s: int = 300
    silence_exit_after_s: int = 1800
    enter_confirm_fixes: int = 1
    exit_after_outside_fixes: int = 2
    exit_margin_m: float = 25.0
    max_accuracy_m: float = 200.0
    max_speed_mps: float = 70.0
    clock_skew_s: int = 120
    max_fix_age_s: int = 24 * 3600
    # 0 = off; else a fix that would enter, this many metres or more from the device's previous fix, is
    # held until the next fix shows whether it was a lone out-and-back spike (docs/presence.md)
    spike_hold_m: float = 0.0


class IngestSettings(BaseModel):
    max_batch: int = 1000
    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 30.0  # to receive a whole request body (more: 408, connection closed; 0 = none)
    fix_retention_s: int = 0  # 0 = raw fixes are not stored
    # answers kept for retried requests (15 min; 0: none kept, a retry is answered afresh)
    answer_retention_s: float = Field(default=900.0, ge=0)
    # under load (requests waited through the last batch), how long the feed thread waits for a second
    # request to join a lone one: one transaction for both (location_feed; 0: it never waits)
    group_wait_ms: float = Field(default=0.5, ge=0, le=20)
    # zone events are deleted this long after they happened, once nothing needs them (0: kept for ever;
    # geofence.service.event_retention)
    zone_event_retention_days: int = Field(default=395, ge=0)


class SchedulerSettings(BaseModel):
    enabled: bool = True
    dispatch_every_s: float = 2.0
    sweep_every_s: float = 60.0
    lease_s: int = 60
    max_attempts: int = 6
    # The zone-event log's consumers and the dispatcher are woken by the commit that gives them work
    # (NOTIFY on PostgreSQL, in-process on SQLite); these polls are only the fallback.
    events_poll_s: float = Field(default=1.0, gt=0)
    # once woken by a zone event, the log's consumers off an offer's path (export, webhooks, arrivals,
    # orders) wait this long, so that they pass after the offer is decided and sent (loops.Loop)
    side_loops_settle_s: float = Field(default=0.1, ge=0, le=5)
    consumer_max_attempts: int = Field(default=5, ge=1)  # a failing event is then parked for an operator
    consumer_retry_s: float = Field(default=2.0, gt=0)  # first retry delay, doubling (at most 10 min)
    # devices decided side by side (each in order), PostgreSQL only (SQLite has one writer)
    consumer_threads: int = Field(default=4, ge=1, le=32)
    config_poll_s: float = Field(default=0.5, gt=0)  # zone / policy changes reach every process within it


class FcmSettings(BaseModel):
    credentials_file: Path | None = None
    project_id: str | None = None
    # What the apps register: "token" (FirebaseMessaging.getToken(), wire field `token`) or "fid"
    # (Firebase installation id, apps with FID registration on, wire field `fid`).
    target_field: Literal["token", "fid"] = "token"
    batch_size: int = 100  # send_each starts one thread per message; FCM allows at most 500
    # Per request, to connect and again to answer; with the provider's retries it bounds one send
    # (campaigns.providers.fcm.send_budget_s: 31 s at 5 s), which must fit in scheduler.lease_s.
    timeout_s: float = Field(default=5.0, gt=0)
    base_url: str = "https://fcm.googleapis.com"  # an FCM emulator or test fake; default the real FCM


class TwilioSettings(BaseModel):
    account_sid: str | None = None
    auth_token: SecretStr | None = None
    messaging_service_sid: str | None = None
    from_number: str | None = None
    status_callback_url: str | None = None
    validity_period_s: int = 3600
    timeout_s: float = Field(default=10.0, gt=0)  # per request, to connect and again to answer (no retries)
    base_url: str | None = None  # a Twilio-compatible test server; None = https://api.twilio.com
    stop_number: str | None = None  # the short number customers reply STOP to (FR: a 36xxx code)
    warn_above_segments: int = 2  # campaign save warns when an SMS needs more segments than this


class LimitSettings(BaseModel):
    """Request-rate limits, shared by every API process (one bucket row each in the database).

    0 disables a limit. An ingest key is usually shared by every install of the app, so its limit is a
    coarse ceiling; the per-device limit applies to callers bound by an ``X-Device-Token``.
    """

    key_rate_per_s: float = 100.0
    key_burst: int = 500
    device_rate_per_s: float = 2.0
    device_burst: int = 30
    # Failed API-key checks, per client address and per key id named by the failing token (429 past it)
    failed_auth_rate_per_s: float = 1.0
    failed_auth_burst: int = 30
    # "database": buckets shared by all processes (default); "memory": per process (tests, one process)
    store: Literal["database", "memory"] = "database"


class LogSettings(BaseModel):
    level: str = "INFO"
    json_format: bool = True  # one JSON object per line; False = plain text for a terminal


class CampaignSettings(BaseModel):
    """Operator-wide send rules (issue 5). Campaigns add their own windows, cooldowns and policy."""

    max_offers_per_day: int = 2  # per customer, all campaigns, calendar day in the recipient's zone
    max_offers_per_week: int = 5
    max_event_age_s: int = 1800  # older zone events (late batches, replays) trigger nothing
    legal_hours_file: Path | None = None  # JSON shaped like campaigns.legal_hours.DEFAULT_LEGAL_TABLE
    channel_rates: dict[str, float] = Field(default_factory=dict)  # msg/s per sender: "sms", "push:fcm"


class SmsKeywordSettings(BaseModel):
    """Inbound SMS keyword lists (None = the defaults in campaigns/keywords.py) and the fuzzy budget."""

    opt_out: list[str] | None = None
    opt_in: list[str] | None = None
    help: list[str] | None = None
    max_other_words: int = 3


class ConsoleSettings(BaseModel):
    """The marketer's console under /console (sessions are sealed with ``hash_key``)."""

    # MapLibre style JSON URL, or a raster tile URL template with {z}/{x}/{y}; None = plain background
    basemap_style_url: str | None = None
    session_max_age_s: int = Field(default=8 * 3600, ge=300, le=30 * 86400)
    default_country: str = Field(default="FR", min_length=1, max_length=2)  # legal SMS hours shown


class StreetSettings(BaseModel):
    """Travel-time zones (isochrones): the operator's OpenStreetMap extract, read offline."""

    # An .osm.pbf covering the stores (e.g. a Geofabrik region). None: travel-time zones fall back to
    # the profile circle and say so. Replace it with a newer file, then run `geofence zones resize`.
    extract_file: Path | None = None
class WebhookSettings(BaseModel):
    """Outbound webhooks (docs/webhooks.md): how long a receiver may take and where it may live."""

    # Targets on private, loopback or link-local addresses are refused (a webhook must not reach into
    # the operator's own network) unless this is on: tests, or receivers on the same private network.
    allow_private_targets: bool = False
    timeout_s: float = Field(default=15.0, gt=0)  # per attempt, to connect and again to answer
    threads: int = Field(default=4, ge=1, le=32)  # endpoints sent to side by side (each in order)
    rotation_overlap_s: int = Field(default=86400, ge=0)  # an old secret still signs this long
    # the store-side event log (``outbound_events``) is kept this long, then purged once relayed and sent
    store_events_retention_days: int = Field(default=30, ge=1)
    # a settled message (delivered, parked, cancelled) is deleted from the delivery log this long after;
    # pending ones never are (0: kept for ever; geofence.service.webhook_retention)
    delivery_retention_days: int = Field(default=30, ge=0)


class OrderSettings(BaseModel):
    """Click-and-collect (docs/orders.md): when a customer is "approaching", when the schedule stands in."""

    approach_minutes: float = Field(default=5.0, gt=0, le=60)  # an order may set its own
    # the travel profile of a store zone that names none (zones.sizing.PROFILES)
    default_profile: Literal["walk", "bike", "transit", "drive_urban", "drive_rural"] = "drive_urban"
    stale_after_s: int = Field(default=600, ge=60)  # no position this long: the phone stopped sharing
    track_every_s: float = Field(default=5.0, gt=0)  # the pass over open orders (positions, the clock)


class PartitionedIngestSettings(BaseModel):
    """The scaled ingest path, used when ``bus`` is set (docs/scaling.md, "Partitioned ingest")."""

    partitions: int = Field(default=16, ge=1, le=1024)  # fixed for the stream's life: a device's home
    stream: str = "GEOFENCE_FIXES"  # JetStream stream holding the fixes, subjects ``<subject>.<partition>``
    subject: str = "geofence.fixes"
    lease_bucket: str = "geofence_ingest_leases"  # key-value bucket of partition leases (its TTL: lease_s)
    replicas: int = Field(default=1, ge=1, le=5)  # copies of the stream and the bucket; 3 on a 3-node cluster
    lease_s: float = Field(default=6.0, ge=1.0)  # a dead worker's partitions move on within this
    fetch_batch: int = Field(default=500, ge=1, le=10_000)  # messages read ahead per partition
    duplicate_window_s: float = Field(default=120.0, gt=0)  # a retried request within it is dropped
    max_age_s: int = Field(default=7 * 86400, gt=0)  # fixes kept in the stream (replay horizon)
    publish_timeout_s: float = Field(default=5.0, gt=0)  # JetStream's acknowledgement, else 503


class ZoneIndexSettings(BaseModel):
    """The in-memory zone index of every process (docs/zones.md, *Start-up from a snapshot*)."""

    # The worker writes its index here (refreshed every snapshot_every_s when the zones changed); API
    # processes start from it when it matches the zones table, then catch up. None: every process builds
    # its index from the database.
    snapshot_path: Path | None = None
    snapshot_every_s: float = Field(default=300.0, gt=0)
    compact_check_s: float = Field(default=60.0, gt=0)  # how often a process looks whether to compact


class EventStreamSettings(BaseModel):
    """The zone-event stream on the bus (``GEOFENCE_BUS`` set): JetStream names and delivery rules."""

    name: str = "GEOFENCE_EVENTS"  # the stream; its subjects are ``<subject_prefix>.<enter|exit|dwell>``
    subject_prefix: str = "geofence.events"
    replicas: int = Field(default=1, ge=1, le=5)  # 3 on a 3-node cluster (deploy/)
    max_age_s: int = Field(default=7 * 86400, gt=0)  # events kept this long (consumers replay within it)
    duplicate_window_s: int = Field(default=600, gt=0)  # a relay republishing after a crash is de-duplicated
    ack_wait_s: float = Field(default=30.0, gt=0)  # an unacknowledged event (worker killed) is handed again
    max_ack_pending: int = Field(default=2000, ge=1)  # per consumer, over all its worker processes
    batch: int = Field(default=100, ge=1, le=1000)  # events fetched per pull


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GEOFENCE_", env_nested_delimiter="__", env_file=None, extra="ignore"
    )

    env: str = "local"
    database_url: str = "sqlite:///./var/geofence.db"
    # Must be set outside env=local (Twilio signs the public URL: a wrong one refuses every webhook).
    public_base_url: str = "http://127.0.0.1:8000"
    # Secret used for keyed hashes (phone suppression list, log masking, device link tokens). Must be
    # set outside env=local.
    hash_key: SecretStr = SecretStr(PLACEHOLDER_HASH_KEY)
    # Lifetime of a device link token (POST /v1/customers/{id}/link-tokens): the app must register
    # with it within this many seconds.
    link_token_ttl_s: int = Field(default=600, gt=0, le=86_400)
    channels: list[str] = Field(default_factory=lambda: ["outbox"])
    outbox_dir: Path = Path("var/outbox")
    export_dir: Path = Path("var/exports")
    auth_required: bool = True
    # PostgreSQL: run `alembic upgrade head` when the app/CLI starts (False = run `geofence db upgrade`
    # yourself before starting). SQLite always creates its tables directly.
    migrate_on_start: bool = True

    # "" = the embedded path (each API process ingests into the database itself); "nats://host:4222"
    # (comma-separated for a cluster) = API processes publish fixes to JetStream and `geofence
    # ingest-worker` processes ingest them, partitioned by device (``partitioned``).
    bus: str = ""
    partitioned: PartitionedIngestSettings = Field(default_factory=PartitionedIngestSettings)

    fence: FenceDefaults = Field(default_factory=FenceDefaults)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    fcm: FcmSettings = Field(default_factory=FcmSettings)
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    sms_keywords: SmsKeywordSettings = Field(default_factory=SmsKeywordSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    campaigns: CampaignSettings = Field(default_factory=CampaignSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    streets: StreetSettings = Field(default_factory=StreetSettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    orders: OrderSettings = Field(default_factory=OrderSettings)
    zone_index: ZoneIndexSettings = Field(default_factory=ZoneIndexSettings)
    event_stream: EventStreamSettings = Field(default_factory=EventStreamSettings)

    @model_validator(mode="after")
    def refuse_placeholders_outside_local(self) -> Settings:
        """Outside ``env=local`` a placeholder hash key (anyone could recompute the hashes and forge
        link tokens) or a default public URL (every Twilio signature would fail) must stop start-up."""
        if self.env == "local":
            return self
        problems = []
        key = self.hash_key.get_secret_value()
        if key.strip() in _PLACEHOLDER_SECRETS:
            problems.append(
                "GEOFENCE_HASH_KEY is a placeholder; generate one: "
                'python -c "import secrets; print(secrets.token_urlsafe(32))"'
            )
        if "public_base_url" not in self.model_fields_set or not self.public_base_url.strip():
            problems.append("GEOFENCE_PUBLIC_BASE_URL is not set (the API's public URL, as Twilio sees it)")
        if problems:
            raise ValueError(f"refusing to start with GEOFENCE_ENV={self.env!r}: " + "; ".join(problems))
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
