"""The export kinds: for each, the table, its change-time expression, its key, filters and builder.

Every kind is read in (change time, id) order, so its change time must be one SQL expression: a
contact changes with the customer row, a consent entry or a new visit (``GREATEST`` of the three,
spelled ``max`` on SQLite). Kept apart from the keyset reading (``campaigns.export.sources``) so
adding a kind touches only this table of kinds and its builder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, false, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlmodel import Session

from campaigns.export.record_builders import (
    EPOCH,
    VISIT_KINDS,
    consent_records,
    customer_records,
    delivery_records,
    zone_event_records,
)
from campaigns.storage.customers import ConsentEvent, Customer
from campaigns.storage.deliveries import Delivery
from campaigns.storage.geofence_views import ZONE_EVENTS

_EPOCH_SQL = literal(EPOCH, DateTime(timezone=True))
_EVENTS = ZONE_EVENTS.c


@dataclass(frozen=True)
class ExportKind:
    name: str
    table: Any
    changed_at: Any  # SQL expression of the row's last change time
    row_id: Any
    filters: tuple[Any, ...]
    to_records: Callable[[Session, Sequence[Any], datetime], list[Any]]  # (session, rows, at)


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
        customer_records,
    ),
    "consents": ExportKind(
        "consents", ConsentEvent, ConsentEvent.recorded_at, ConsentEvent.id, (), consent_records
    ),
    "opt_outs": ExportKind(
        "opt_outs",
        ConsentEvent,
        ConsentEvent.recorded_at,
        ConsentEvent.id,
        (ConsentEvent.granted == false(),),
        consent_records,
    ),
    "zone_events": ExportKind(
        "zone_events",
        ZONE_EVENTS,
        func.coalesce(_EVENTS.recorded_at, _EVENTS.at),
        _EVENTS.id,
        (),
        zone_event_records,
    ),
    "deliveries": ExportKind(
        "deliveries",
        Delivery,
        func.coalesce(Delivery.updated_at, Delivery.created_at),
        Delivery.id,
        (),
        delivery_records,
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
