"""Reading the tables for an export: keyset pagination by batches, in constant memory.

Each export kind is a table read in (change time, id) order. One short session per batch (no
connection held while the consumer — an HTTP client, a file — is slow), ``LIMIT batch_size`` per query,
and the next batch starts strictly after the last key seen: the memory used does not grow with the
table. Works the same on SQLite and PostgreSQL (row-value comparisons spelled out with OR/AND).

An export is bounded by a snapshot taken when it starts (:func:`plan_export`): its upper key is the
last row changed at least ``settle_s`` seconds ago. That upper key is the next cursor, so it is known
before the first byte is streamed (an HTTP header), and rows committed during the export are left for
the next one. The settle delay covers transactions that stamped an earlier time but commit later.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import DateTime, and_, false, func, literal, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from campaigns.consent import consent_state
from campaigns.export.cursor import Cursor, decode_cursor, encode_cursor
from campaigns.export.records import (
    ConsentRecord,
    CustomerRecord,
    DeliveryRecord,
    LastVisit,
    Party,
    ZoneEventRecord,
)
from campaigns.storage.customers import ConsentEvent, Customer
from campaigns.storage.deliveries import Delivery
from campaigns.storage.geofence_views import ZONE_EVENTS, ZONES

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_SQL = literal(EPOCH, DateTime(timezone=True))
VISIT_KINDS = ("enter", "dwell")
_EVENTS = ZONE_EVENTS.c


def _utc(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes (stored as UTC); PostgreSQL aware ones in the session zone.
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _bind(value: datetime) -> datetime:
    # SQLite stores the wall-clock digits and drops the offset: always compare in UTC.
    return value.astimezone(UTC)


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


# --- the kinds ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportKind:
    name: str
    table: Any
    changed_at: Any  # SQL expression of the row's last change time
    row_id: Any
    filters: tuple[Any, ...]
    to_records: Callable[[Session, Sequence[Any], datetime], list[Any]]  # (session, rows, at)


def _consent_records(session: Session, rows: Sequence[dict[str, Any]], _at: datetime) -> list[Any]:
    lookup = parties(session, (r["customer_id"] for r in rows))
    return [
        ConsentRecord(
            id=r["id"],
            party=_party(lookup, r["customer_id"]),
            purpose=r["purpose"],
            granted=r["granted"],
            occurred_at=_utc(r["occurred_at"]) or EPOCH,
            recorded_at=_utc(r["recorded_at"]) or EPOCH,
            source=r["source"],
            wording=r["wording"],
            wording_version=r["wording_version"],
            recorded_by=r["recorded_by"],
            evidence=r["evidence"] if isinstance(r["evidence"], dict) else {},
        )
        for r in rows
    ]


def _zone_event_records(session: Session, rows: Sequence[dict[str, Any]], _at: datetime) -> list[Any]:
    lookup = parties(session, (r["customer_id"] for r in rows))
    stores = zone_store_ids(session, (r["zone_id"] for r in rows))
    return [
        ZoneEventRecord(
            id=r["id"],
            party=_party(lookup, r["customer_id"]),
            zone_id=r["zone_id"],
            store_id=stores.get(r["zone_id"]),
            kind=r["kind"],
            at=_utc(r["at"]) or EPOCH,
            visit_id=r["visit_id"],
            reason=r["reason"],
            lat=r["lat"],
            lng=r["lng"],
            recorded_at=_utc(r["recorded_at"]),
        )
        for r in rows
    ]


def _delivery_records(session: Session, rows: Sequence[dict[str, Any]], _at: datetime) -> list[Any]:
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
            created_at=_utc(r["created_at"]) or EPOCH,
            due_at=_utc(r["due_at"]),
            sent_at=_utc(r["sent_at"]),
            delivered_at=_utc(r["delivered_at"]),
            changed_at=_utc(r["updated_at"]) or _utc(r["created_at"]) or EPOCH,
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
        c: LastVisit(at=_utc(at) or EPOCH, zone_id=zone_of[c], store_id=stores.get(zone_of[c]), visits=n)
        for c, (at, n) in latest.items()
        if c in zone_of
    }


def _customer_records(session: Session, rows: Sequence[dict[str, Any]], at: datetime) -> list[Any]:
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
                created_at=_utc(r["created_at"]),
                changed_at=_utc(r.get("_changed_at")) or _utc(r["updated_at"]) or EPOCH,
                erased=erased,
            )
        )
    return out


class greatest(FunctionElement[datetime]):  # lower case: an SQL function name
    """``GREATEST(a, b, …)``; SQLite spells it ``max(a, b, …)`` (arguments must not be NULL there)."""

    type = DateTime(timezone=True)
    name = "greatest"
    inherit_cache = True


@compiles(greatest)
def _greatest(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"greatest({compiler.process(element.clauses, **kw)})"


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: Any, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


def _customer_changed_at() -> Any:
    """A contact row changes with the customer, a consent entry or a new visit: its consent flags and
    last-visit summary must reach the CRM on the next incremental export (e.g. right after a STOP)."""
    consent_at = (
        select(func.max(ConsentEvent.recorded_at))
        .where(ConsentEvent.customer_id == Customer.id)
        .correlate(Customer)
        .scalar_subquery()
    )
    visit_at = (
        select(func.max(func.coalesce(_EVENTS.recorded_at, _EVENTS.at)))
        .where(_EVENTS.customer_id == Customer.id)
        .where(_EVENTS.kind.in_(VISIT_KINDS))  # type: ignore[attr-defined]
        .correlate(Customer)
        .scalar_subquery()
    )
    return greatest(
        func.coalesce(Customer.updated_at, Customer.created_at, _EPOCH_SQL),
        func.coalesce(consent_at, _EPOCH_SQL),
        func.coalesce(visit_at, _EPOCH_SQL),
    )


KINDS: dict[str, ExportKind] = {
    "customers": ExportKind(
        "customers",
        Customer,
        _customer_changed_at(),
        Customer.id,
        (),
        _customer_records,
    ),
    "consents": ExportKind(
        "consents", ConsentEvent, ConsentEvent.recorded_at, ConsentEvent.id, (), _consent_records
    ),
    "opt_outs": ExportKind(
        "opt_outs",
        ConsentEvent,
        ConsentEvent.recorded_at,
        ConsentEvent.id,
        (ConsentEvent.granted == false(),),
        _consent_records,
    ),
    "zone_events": ExportKind(
        "zone_events",
        ZONE_EVENTS,
        func.coalesce(_EVENTS.recorded_at, _EVENTS.at),
        _EVENTS.id,
        (),
        _zone_event_records,
    ),
    "deliveries": ExportKind(
        "deliveries",
        Delivery,
        func.coalesce(Delivery.updated_at, Delivery.created_at),
        Delivery.id,
        (),
        _delivery_records,
    ),
}
KIND_NAMES = tuple(KINDS)


class UnknownKind(ValueError):
    pass


def get_kind(name: str) -> ExportKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown export {name!r} (expected one of {', '.join(KIND_NAMES)})") from None


# --- planning and reading --------------------------------------------------------------------------


def _after(kind: ExportKind, cursor: Cursor) -> Any:
    t = _bind(cursor.changed_at)
    return or_(kind.changed_at > t, and_(kind.changed_at == t, kind.row_id > cursor.row_id))


def _upto(kind: ExportKind, cursor: Cursor) -> Any:
    t = _bind(cursor.changed_at)
    return or_(kind.changed_at < t, and_(kind.changed_at == t, kind.row_id <= cursor.row_id))


@dataclass(frozen=True)
class ExportPlan:
    """One export run: rows strictly after ``since`` up to and including ``upto`` (the snapshot)."""

    kind: ExportKind
    since: Cursor | None
    upto: Cursor | None  # None: nothing to export
    at: datetime
    members: Any = None  # an SQL condition the rows must also meet (the queued zone events of one file)

    @property
    def next_cursor(self) -> str | None:
        """What the client passes as ``since`` next time (unchanged when there was nothing new)."""
        position = self.upto or self.since
        return encode_cursor(self.kind.name, position) if position else None

    def bounds(self) -> list[Any]:
        clauses = list(self.kind.filters)
        if self.since is not None:
            clauses.append(_after(self.kind, self.since))
        if self.upto is not None:
            clauses.append(_upto(self.kind, self.upto))
        if self.members is not None:
            clauses.append(self.members)
        return clauses


def plan_export(
    engine: Engine, kind_name: str, since: str | None, *, at: datetime, settle_s: float = 2.0
) -> ExportPlan:
    """Decode ``since`` (raises ``CursorError``) and take the snapshot's upper key."""
    kind = get_kind(kind_name)
    start = decode_cursor(kind.name, since)
    horizon = _bind(at - timedelta(seconds=settle_s))
    stmt = select(kind.changed_at, kind.row_id).where(*kind.filters).where(kind.changed_at <= horizon)
    if start is not None:
        stmt = stmt.where(_after(kind, start))
    with Session(engine) as session:
        last = session.execute(stmt.order_by(kind.changed_at.desc(), kind.row_id.desc()).limit(1)).first()
    upto = Cursor(_utc(last[0]) or EPOCH, str(last[1])) if last else None
    return ExportPlan(kind=kind, since=start, upto=upto, at=at)


def count_rows(engine: Engine, plan: ExportPlan) -> int:
    """Rows in the plan (for a progress bar); 0 when there is nothing new."""
    if plan.upto is None:
        return 0
    with Session(engine) as session:
        return int(
            session.execute(
                select(func.count()).select_from(plan.kind.table).where(*plan.bounds())
            ).scalar_one()
        )


def iter_records(engine: Engine, plan: ExportPlan, *, batch_size: int = 1000) -> Iterator[Any]:
    """Yield the plan's records in key order: one streamed, bounded read, enriched batch by batch.

    The rows come from ONE query over the snapshot's bounds, read through a server-side cursor on
    PostgreSQL (``stream_results``) and SQLite's lazy cursor, ``batch_size`` rows at a time: a single
    sort instead of one per page (a keyset query per page re-sorts the whole table when the change-time
    expression has no index). Lookups for each batch (customers' CRM ids, zones' stores) use their
    own short session.
    """
    if plan.upto is None:
        return
    kind = plan.kind
    stmt = (
        select(kind.table, kind.changed_at.label("_changed_at"))
        .where(*plan.bounds())
        .order_by(kind.changed_at, kind.row_id)
    )
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_size).execute(stmt)
        names = list(result.keys())
        for partition in result.partitions(batch_size):
            rows = [dict(zip(names, row, strict=True)) for row in partition]  # C-speed; Row.attr is not
            with Session(engine) as session:
                records = kind.to_records(session, rows, plan.at)
            yield from records
