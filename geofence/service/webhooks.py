"""Outbound webhooks: a consumer of the zone-event log enqueues one delivery per (endpoint, event);
a sender posts them, signed (Standard Webhooks), in log order per endpoint.

Why a table between the log and the HTTP call: the log consumer's cursor moves on as soon as the
deliveries are written (one slow receiver holds up no one), and each delivery keeps its own
``webhook-id``, attempts and error, so nothing is dropped silently (Tile38 keeps a hook 30 s). A
receiver that fails holds its own queue only: the head is retried with backoff and jitter for about
three days (``MAX_AGE``), honouring ``Retry-After``, then parked (visible, replayable) and the next goes.
A 410 disables the endpoint. A crash between the POST and its record sends the same ``webhook-id``
again: delivery is at least once, de-duplicated by the receiver on that id.
"""

from __future__ import annotations

import json
import logging
import random
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from geofence.events import ZoneEvent
from geofence.service.tables._types import as_utc, new_id
from geofence.service.tables.consumers import EventConsumerRow
from geofence.service.tables.presence import ZoneEventRow
from geofence.service.tables.webhooks import WebhookDeliveryRow, WebhookEndpointRow
from geofence.service.webhook_endpoints import (
    EVENT_TYPES,
    FILTERS,
    STORE_TYPES,
    ZONE_TYPES,
    known_filter,
    register_endpoint,
    wants,
)
from geofence.service.webhook_metrics import ATTEMPTS, DELIVERIES
from geofence.service.webhook_retries import backoff, retry_after
from geofence.service.webhook_signing import signed_headers
from geofence.service.webhook_targets import Resolver, resolve_target, system_resolver

if TYPE_CHECKING:  # httpx is imported by the sender, which only workers run: API processes and the CLI
    import httpx  # start without it (~0.1-0.25 s)

__all__ = [  # the endpoint vocabulary is re-exported: routes, CLI and tests import it from here
    "EVENT_TYPES", "FILTERS", "MAX_AGE", "STORE_TYPES", "ZONE_TYPES", "WebhookEnqueuer", "WebhookSender",
    "backoff", "delivery_counts", "known_filter", "register_endpoint", "replay", "retry_after", "wants",
]  # fmt: skip

log = logging.getLogger(__name__)

MAX_AGE = timedelta(days=3)
ZONE_STREAM, STORE_STREAM = "zone", "store"  # which log a delivery's seq belongs to
STREAMS = (ZONE_STREAM, STORE_STREAM)


# -- endpoints ----------------------------------------------------------------------------------------
# -- enqueue: the log consumer ------------------------------------------------------------------------
def payload(event: ZoneEvent, event_type: str) -> str:
    """The body: what happened where, never a phone number, push token or position."""
    return json.dumps(
        {
            "type": event_type,
            "timestamp": event.at.isoformat(),
            "data": {
                "event_id": event.id,
                "zone_id": event.zone_id,
                "device_id": event.device_id or None,
                "visit_id": event.visit_id,
                "reason": event.reason,
            },
        },
        separators=(",", ":"),
        sort_keys=True,
    )



class WebhookEnqueuer:
    """The ``webhooks`` consumer's handler: a delivery per enabled endpoint that wants the event,
    idempotent by (endpoint, event) — a batch handed again after a crash adds nothing."""

    def __init__(self, engine: Engine, *, now: Callable[[], datetime]) -> None:
        self.engine, self.now = engine, now

    def handle(self, event: ZoneEvent) -> None:
        event_type = ZONE_TYPES[str(event.kind)]
        with Session(self.engine) as session:
            targets = [
                e.id
                for e in session.execute(
                    select(WebhookEndpointRow).where(col(WebhookEndpointRow.disabled_at).is_(None))
                ).scalars()
                if wants(e, event_type, event.zone_id)
            ]
            if not targets:
                return
            seq = session.execute(
                select(col(ZoneEventRow.seq)).where(col(ZoneEventRow.id) == event.id)
            ).scalar()
            done = set(
                session.execute(
                    select(col(WebhookDeliveryRow.endpoint_id)).where(
                        col(WebhookDeliveryRow.event_id) == event.id
                    )
                ).scalars()
            )
            at, body = self.now(), payload(event, event_type)
            for endpoint_id in targets:
                if endpoint_id not in done:
                    session.add(_delivery(endpoint_id, event, event_type, int(seq or 0), body, at))
            try:
                session.commit()
            except IntegrityError:  # another pass wrote them first
                session.rollback()


def _delivery(
    endpoint_id: str, event: ZoneEvent, event_type: str, seq: int, body: str, at: datetime
) -> WebhookDeliveryRow:
    return WebhookDeliveryRow(
        id=f"msg_{new_id()}",
        endpoint_id=endpoint_id,
        event_id=event.id,
        event_type=event_type,
        seq=seq,
        occurred_at=event.at,
        payload=body,
        next_attempt_at=at,
        created_at=at,
    )


def replay(
    session: Session, endpoint: WebhookEndpointRow, since: datetime, *, now: datetime, limit: int = 10_000
) -> int:
    """Send again every event from ``since`` on (same ``webhook-id`` for those sent before), in log
    order, and the events of that period the endpoint never had. Returns how many are due."""
    from geofence.service.event_log import to_event

    again = session.execute(
        update(WebhookDeliveryRow)
        .where(
            col(WebhookDeliveryRow.endpoint_id) == endpoint.id, col(WebhookDeliveryRow.occurred_at) >= since
        )
        .values(status="pending", attempts=0, next_attempt_at=now, last_error=None)
    ).rowcount  # type: ignore[attr-defined]
    had = set(
        session.execute(
            select(col(WebhookDeliveryRow.event_id)).where(
                col(WebhookDeliveryRow.endpoint_id) == endpoint.id,
                col(WebhookDeliveryRow.occurred_at) >= since,
            )
        ).scalars()
    )
    rows = session.execute(
        select(ZoneEventRow)
        .where(col(ZoneEventRow.at) >= since, col(ZoneEventRow.seq).is_not(None))
        .order_by(col(ZoneEventRow.seq))
        .limit(limit)
    ).scalars()
    added = 0
    for row in rows:
        event_type = ZONE_TYPES.get(row.kind)
        if row.id in had or event_type is None or not wants(endpoint, event_type, row.zone_id):
            continue
        event = to_event(row)
        session.add(
            _delivery(endpoint.id, event, event_type, int(row.seq or 0), payload(event, event_type), now)
        )
        added += 1
    from geofence.service.webhook_store_events import replay_store_events

    return int(again) + added + replay_store_events(session, endpoint, since, had=had, now=now, limit=limit)


# -- send ---------------------------------------------------------------------------------------------
def live_secrets(endpoint: WebhookEndpointRow, at: datetime) -> list[str]:
    """The newest secret, and older ones until their ``until`` (a rotation's overlap)."""
    return [
        s["secret"] for s in endpoint.secrets if not s.get("until") or datetime.fromisoformat(s["until"]) > at
    ]


def _exclusive(conn: object, name: str) -> bool:
    if getattr(getattr(conn, "dialect", None), "name", "") != "postgresql":
        return True
    key = zlib.crc32(name.encode()) - 2**31
    return bool(conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}).scalar())  # type: ignore[attr-defined]


class WebhookSender:
    """Posts due deliveries, each endpoint's in ``seq`` order, endpoints side by side."""

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime],
        timeout_s: float = 15.0,
        allow_private: bool = False,
        threads: int = 4,
        per_endpoint: int = 50,
        rng: Callable[[], float] = random.random,
        consumer: str = "webhooks",
        resolve: Resolver = system_resolver,
    ) -> None:
        self.engine, self.now, self.timeout_s, self.consumer = engine, now, timeout_s, consumer
        self.resolve = resolve  # the DNS seam: tests answer as a rebinding attacker would
        self.allow_private, self.threads, self.per_endpoint, self.rng = (
            allow_private,
            threads,
            per_endpoint,
            rng,
        )

    def run_once(self) -> bool:
        """One pass; True when an endpoint has more due now."""
        with self.engine.connect() as lock:
            if not _exclusive(lock, "geofence.webhooks.sender"):
                return False  # another process sends
            with Session(self.engine, expire_on_commit=False) as session:
                endpoints = list(
                    session.execute(
                        select(WebhookEndpointRow).where(
                            col(WebhookEndpointRow.disabled_at).is_(None),
                            col(WebhookEndpointRow.id).in_(
                                select(col(WebhookDeliveryRow.endpoint_id)).where(
                                    col(WebhookDeliveryRow.status) == "pending",
                                    col(WebhookDeliveryRow.next_attempt_at) <= self.now(),
                                    self._settled(),
                                )
                            ),
                        )
                    ).scalars()
                )
                session.expunge_all()
            if len(endpoints) <= 1 or self.threads <= 1:
                more = [self._drain(e) for e in endpoints]
            else:
                with ThreadPoolExecutor(min(self.threads, len(endpoints))) as pool:
                    more = list(pool.map(self._drain, endpoints))
            lock.rollback()
        return any(more)

    def _settled(self) -> Any:
        """Deliveries that may go: a zone event's once the enqueuing consumer has finished its log
        position (it enqueues a batch device by device, so a delivery past its cursor may still get an
        earlier neighbour — sending it would break the order); a store event's at once (they are
        enqueued in log order, with the cursor, in one transaction)."""
        cursor = (
            select(col(EventConsumerRow.cursor_seq)).where(col(EventConsumerRow.name) == self.consumer)
        ).scalar_subquery()
        return or_(col(WebhookDeliveryRow.stream) == STORE_STREAM, col(WebhookDeliveryRow.seq) <= cursor)

    def _drain(self, endpoint: WebhookEndpointRow) -> bool:
        """Each stream of the endpoint (zone events, store events), in its log order. True when a
        full batch went."""
        import httpx

        with httpx.Client(timeout=self.timeout_s, follow_redirects=False) as client:
            more = [self._drain_stream(client, endpoint, stream) for stream in STREAMS]  # each, always
            return any(more)

    def _drain_stream(self, client: httpx.Client, endpoint: WebhookEndpointRow, stream: str) -> bool:
        """The stream's oldest pending deliveries, one after another, until one waits or fails
        (later ones wait behind it: order per endpoint and stream)."""
        with Session(self.engine, expire_on_commit=False) as session:
            queue = list(
                session.execute(
                    select(WebhookDeliveryRow)
                    .where(
                        col(WebhookDeliveryRow.endpoint_id) == endpoint.id,
                        col(WebhookDeliveryRow.stream) == stream,
                        col(WebhookDeliveryRow.status) == "pending",
                        self._settled(),
                    )
                    .order_by(col(WebhookDeliveryRow.seq))
                    .limit(self.per_endpoint)
                ).scalars()
            )
            session.expunge_all()
        for head in queue:
            if (as_utc(head.next_attempt_at) or head.next_attempt_at) > self.now():
                return False
            if not self._attempt(client, endpoint, head):
                return False
        return len(queue) == self.per_endpoint

    def _withdrawn(self, d: WebhookDeliveryRow) -> bool:
        """A store alert whose event left the log is cancelled instead of sent."""
        from campaigns.storage.outbound_events import OutboundEventRow

        with Session(self.engine) as session:
            found = select(col(OutboundEventRow.seq)).where(col(OutboundEventRow.id) == d.event_id)
            if session.execute(found).first():
                return False
            session.execute(
                update(WebhookDeliveryRow)
                .where(col(WebhookDeliveryRow.id) == d.id, col(WebhookDeliveryRow.status) == "pending")
                .values(status="cancelled", last_error="its event was withdrawn (consent withdrawn, erasure)")
            )
            session.commit()
        return True

    def _attempt(self, client: httpx.Client, endpoint: WebhookEndpointRow, d: WebhookDeliveryRow) -> bool:
        """One POST of the head; True when it was delivered (the next may go)."""
        import httpx

        at = self.now()
        body = d.payload.encode()
        status: int | None = None
        wait: timedelta | None = None
        if d.stream == STORE_STREAM and d.event_type.startswith("store.") and self._withdrawn(d):
            return True  # its event was deleted (consent withdrawn, erasure): never sent; the next may go
        # one resolution per attempt; the connection goes to the address that was checked
        target, error = resolve_target(endpoint.url, allow_private=self.allow_private, resolve=self.resolve)
        if target is not None:
            try:
                answer = client.post(
                    target.url,
                    content=body,
                    headers=target.headers | signed_headers(live_secrets(endpoint, at), d.id, at, body),
                    extensions=target.extensions,
                )
                status = answer.status_code
                if not 200 <= status < 300:
                    error = f"HTTP {status}"
                    wait = retry_after(answer.headers.get("retry-after"), at)
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
        attempts = d.attempts + 1
        values: dict[str, object] = {"attempts": attempts, "last_status": status, "last_error": error}
        outcome = "delivered" if error is None else "gone" if status == 410 else "failed"
        if error is None:
            values.update(status="delivered", delivered_at=at)
        elif at - (as_utc(d.created_at) or d.created_at) >= MAX_AGE:
            values.update(status="parked")
            outcome = "parked"
            log.error(
                "webhook %s to endpoint %s parked after %d attempts: %s", d.id, endpoint.id, attempts, error
            )
        else:
            values["next_attempt_at"] = at + (wait if wait is not None else backoff(attempts, self.rng))
        with Session(self.engine) as session:
            session.execute(
                update(WebhookDeliveryRow).where(col(WebhookDeliveryRow.id) == d.id).values(**values)
            )
            if status == 410:  # Gone: the receiver asks us to stop
                session.execute(
                    update(WebhookEndpointRow)
                    .where(col(WebhookEndpointRow.id) == endpoint.id)
                    .values(disabled_at=at, disabled_reason="the receiver answered 410 Gone")
                )
            session.commit()
        ATTEMPTS.labels(endpoint.id, outcome).inc()
        if outcome in ("delivered", "parked"):
            DELIVERIES.labels(endpoint.id, outcome).inc()
        return error is None


def delivery_counts(session: Session, endpoint_ids: Sequence[str]) -> dict[tuple[str, str], int]:
    """(endpoint, status) -> deliveries, for the endpoint listing."""
    return {
        (e, s): int(n)
        for e, s, n in session.execute(
            select(col(WebhookDeliveryRow.endpoint_id), col(WebhookDeliveryRow.status), func.count())
            .where(col(WebhookDeliveryRow.endpoint_id).in_(list(endpoint_ids)))
            .group_by(col(WebhookDeliveryRow.endpoint_id), col(WebhookDeliveryRow.status))
        ).all()
    }
