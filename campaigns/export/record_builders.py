"""Export records built from table rows, one batch at a time, with the lookups the batch needs.

Each kind's builder takes a batch of plain rows (dicts) and returns its records
(``campaigns.export.records``): the customer's CRM id (none once erased), the zone's store, a
contact's consent flags and last visit. Every lookup is one ``IN`` query per batch, never one per
row. Kept apart from the kinds' definitions and from the keyset reading because this is where a row
becomes what the CRM sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session

from campaigns.consent import consent_state
from campaigns.export.records import (
    ConsentRecord,
    CustomerRecord,
    DeliveryRecord,
    LastVisit,
    Party,
    ZoneEventRecord,
)
from campaigns.storage.customers import ConsentEvent, Customer
from campaigns.storage.geofence_views import ZONE_EVENTS, ZONES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
VISIT_KINDS = ("enter", "dwell")
_EVENTS = ZONE_EVENTS.c


def to_utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones in the session zone.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- lookups shared by the kinds (one IN query per batch) ----------------------------------------


def parties(session: Session, customer_ids: Iterable[str | None]) -> dict[str, Party]:
    ids = sorted({c for c in customer_ids if c})
    if not ids:
        return {}
    rows = session.execute(
        select(Customer.id, Customer.crm_id, Customer.tz, Customer.erased_at).where(
            Customer.id.in_(ids)  # type: ignore[union-attr]
        )
    ).all()
    return {r[0]: Party(r[0], None if r[3] else r[1], r[2]) for r in rows}


def zone_store_ids(session: Session, zone_ids: Iterable[str | None]) -> dict[str, str | None]:
    """Zone id -> store id, read from the zones table's ``store_id`` column when it has one."""
    ids = sorted({z for z in zone_ids if z})
    table = ZONES
    if not ids:
        return {}
    rows = session.execute(select(table.c.id, table.c.store_id).where(table.c.id.in_(ids))).all()
    return {str(r[0]): (str(r[1]) if r[1] is not None else None) for r in rows}


def _party(lookup: dict[str, Party], customer_id: str | None) -> Party:
    if customer_id is None:
        return Party(None)
    return lookup.get(customer_id, Party(customer_id))


def consent_records(session: Session, rows: Sequence[dict[str, Any]], _at: datetime) -> list[Any]:
    lookup = parties(session, (r["customer_id"] for r in rows))
    return [
        ConsentRecord(
            id=r["id"],
            party=_party(lookup, r["customer_id"]),
            purpose=r["purpose"],
            granted=r["granted"],
            occurred_at=to_utc(r["occurred_at"]) or EPOCH,
            recorded_at=to_utc(r["recorded_at"]) or EPOCH,
            source=r["source"],
            wording=r["wording"],
            wording_version=r["wording_version"],
            recorded_by=r["recorded_by"],
            evidence=r["evidence"] if isinstance(r["evidence"], dict) else {},
        )
        for r in rows
    ]


def zone_event_records(session: Session, rows: Sequence[dict[str, Any]], _at: datetime) -> list[Any]:
    lookup = parties(session, (r["customer_id"] for r in rows))
    stores = zone_store_ids(session, (r["zone_id"] for r in rows))
    return [
        ZoneEventRecord(
            id=r["id"],
            party=_party(lookup, r["customer_id"]),
            zone_id=r["zone_id"],
            store_id=stores.get(r["zone_id"]),
            kind=r["kind"],
            at=to_utc(r["at"]) or EPOCH,
            visit_id=r["visit_id"],
            reason=r["reason"],
            lat=r["lat"],
            lng=r["lng"],
            recorded_at=to_utc(r["recorded_at"]),
        )
        for r in rows
    ]


def delivery_records(session: Session, rows: Sequence[dict[str, Any]], _at: datetime) -> list[Any]:
    lookup = parties(session, (r["customer_id"] for r in rows))
    stores = zone_store_ids(session, (r["zone_id"] for r in rows))
    return [
        DeliveryRecord(
            id=r["id"],
            party=_party(lookup, r["customer_id"]),
            campaign_id=r["campaign_id"],
            zone_id=r["zone_id"],
            store_id=stores.get(r["zone_id"]) if r["zone_id"] else None,
            visit_id=r["visit_id"],
            channel=r["channel"],
            provider=r["provider"],
            status=r["status"],
            reason=r["reason"],
            attempts=r["attempts"],
            error_code=r["error_code"],
            created_at=to_utc(r["created_at"]) or EPOCH,
            due_at=to_utc(r["due_at"]),
            sent_at=to_utc(r["sent_at"]),
            delivered_at=to_utc(r["delivered_at"]),
            changed_at=to_utc(r["updated_at"]) or to_utc(r["created_at"]) or EPOCH,
        )
        for r in rows
    ]


def last_visits(session: Session, customer_ids: Sequence[str]) -> dict[str, LastVisit]:
    """Per customer: the latest enter/dwell, its zone and store, and the number of distinct visits."""
    if not customer_ids:
        return {}
    agg = session.execute(
        select(
            _EVENTS.customer_id,
            func.max(_EVENTS.at),
            func.count(_EVENTS.visit_id.distinct()),  # type: ignore[attr-defined]
        )
        .where(_EVENTS.customer_id.in_(customer_ids))  # type: ignore[union-attr]
        .where(_EVENTS.kind.in_(VISIT_KINDS))  # type: ignore[attr-defined]
        .group_by(_EVENTS.customer_id)
    ).all()
    if not agg:
        return {}
    latest = {r[0]: (r[1], int(r[2])) for r in agg}
    rows = session.execute(
        select(_EVENTS.customer_id, _EVENTS.zone_id, _EVENTS.at)
        .where(_EVENTS.customer_id.in_(list(latest)))  # type: ignore[union-attr]
        .where(_EVENTS.kind.in_(VISIT_KINDS))  # type: ignore[attr-defined]
        .where(_EVENTS.at.in_({v[0] for v in latest.values()}))  # type: ignore[attr-defined]
        .order_by(_EVENTS.zone_id)
    ).all()
    zone_of: dict[str, str] = {}
    for customer_id, zone_id, at in rows:
        if customer_id is not None and at == latest[customer_id][0]:
            zone_of.setdefault(customer_id, zone_id)
    stores = zone_store_ids(session, zone_of.values())
    return {
        c: LastVisit(at=to_utc(at) or EPOCH, zone_id=zone_of[c], store_id=stores.get(zone_of[c]), visits=n)
        for c, (at, n) in latest.items()
        if c in zone_of
    }


def customer_records(session: Session, rows: Sequence[dict[str, Any]], at: datetime) -> list[Any]:
    ids = [r["id"] for r in rows]
    ledger: dict[str, list[ConsentEvent]] = {i: [] for i in ids}
    consent_rows = session.execute(
        select(ConsentEvent).where(ConsentEvent.customer_id.in_(ids))  # type: ignore[union-attr]
    ).scalars()
    for event in consent_rows:
        ledger[event.customer_id].append(event)
    visits = last_visits(session, ids)
    out = []
    for r in rows:
        state = consent_state(ledger[r["id"]], at)
        erased = r["erased_at"] is not None
        out.append(
            CustomerRecord(
                id=r["id"],
                crm_id=None if erased else r["crm_id"],
                phone_e164=r["phone_e164"],
                first_name=r["first_name"],
                locale=r["locale"],
                tz=r["tz"],
                country=r["country"],
                consent={p.value: granted for p, granted in state.items()},
                last_visit=visits.get(r["id"]),
                created_at=to_utc(r["created_at"]),
                changed_at=to_utc(r.get("_changed_at")) or to_utc(r["updated_at"]) or EPOCH,
                erased=erased,
            )
        )
    return out
