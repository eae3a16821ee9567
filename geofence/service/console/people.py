"""Finding customers by id or by (masked) phone number, and their opt-outs, without a number leaving the
server in clear: the page only ever gets ``mask_phone`` of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp

from campaigns.phones import InvalidPhone, mask_phone, to_e164
from geofence.service.console.api_proxy import call_api
from geofence.service.tables._types import as_utc
from geofence.service.tables.customers import ConsentEvent, Customer

MAX_ROWS = 200
MASK_SCAN = 20_000  # customers compared by masked number (a masked number matches no index)


@dataclass
class PeopleFound:
    customer_ids: list[str] = field(default_factory=list)
    opt_outs: list[dict[str, Any]] = field(default_factory=list)
    masked: dict[str, str] = field(default_factory=dict)  # customer id -> masked number


def _matching_customers(conn: Any, q: str) -> dict[str, str | None]:
    """Customer id -> phone for ``q`` = a customer id, a CRM id, a full number or a masked one."""
    rows = conn.execute(
        select(Customer.id, Customer.phone_e164).where((Customer.id == q) | (Customer.crm_id == q))
    ).all()
    if rows:
        return {r.id: r.phone_e164 for r in rows}
    if "*" in q:  # mask_phone keeps the first 3 and last 2 characters and the length
        phone = Customer.phone_e164
        candidates = conn.execute(
            select(Customer.id, phone)
            .where(phone.like(f"{_literal(q[:3])}%{_literal(q[-2:])}", escape="\\"))  # type: ignore[union-attr]
            .where(func.length(phone) == len(q)).limit(MASK_SCAN)
        ).all()
        return {r.id: r.phone_e164 for r in candidates if mask_phone(r.phone_e164) == q}
    try:
        e164 = to_e164(q)
    except (InvalidPhone, ValueError):
        return {}
    rows = conn.execute(select(Customer.id, Customer.phone_e164).where(Customer.phone_e164 == e164)).all()
    return {r.id: r.phone_e164 for r in rows}


def _literal(text: str) -> str:
    """``text`` matched literally inside a LIKE pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_people(engine: Engine, q: str) -> PeopleFound:
    """Opt-outs (withdrawn consents), newest first: all of them, or those of the customers ``q`` names."""
    found = PeopleFound()
    with engine.connect() as conn:
        stmt = (
            select(ConsentEvent.id, ConsentEvent.customer_id, ConsentEvent.purpose, ConsentEvent.source,
                   ConsentEvent.occurred_at, ConsentEvent.recorded_at, ConsentEvent.wording,
                   Customer.phone_e164)
            .join(Customer, Customer.id == ConsentEvent.customer_id, isouter=True)  # type: ignore[arg-type]
            .where(ConsentEvent.granted.is_(False))  # type: ignore[attr-defined]
        )
        if q:
            matches = _matching_customers(conn, q)
            found.customer_ids = sorted(matches)
            found.masked = {cid: mask_phone(phone) for cid, phone in matches.items()}
            if not matches:
                return found
            stmt = stmt.where(ConsentEvent.customer_id.in_(found.customer_ids))  # type: ignore[union-attr]
        rows = conn.execute(stmt.order_by(ConsentEvent.recorded_at.desc()).limit(MAX_ROWS)).all()  # type: ignore[attr-defined]
    for r in rows:
        found.opt_outs.append({
            "id": r.id, "customer_id": r.customer_id, "phone": mask_phone(r.phone_e164), "purpose": r.purpose,
            "source": r.source, "wording": r.wording, "occurred_at": _iso(r.occurred_at),
            "recorded_at": _iso(r.recorded_at),
        })
    return found


def _iso(at: Any) -> str:
    value = as_utc(at)
    return value.isoformat(timespec="seconds") if value is not None else ""


async def consent_history(
    api: ASGIApp, api_key: str, customer_id: str, engine: Engine
) -> dict[str, Any] | None:
    """The customer's ledger as ``GET /v1/customers/{id}/consents`` gives it, with the masked number."""
    status, body, _ = await call_api(api, "GET", f"customers/{quote(customer_id, safe='')}/consents",
                                     api_key=api_key)
    if status != 200 or not isinstance(body, dict):
        return None
    return {**body, "phone": mask_phone(await run_in_threadpool(_phone_of, engine, customer_id))}


def _phone_of(engine: Engine, customer_id: str) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(Customer.phone_e164).where(Customer.id == customer_id)).scalar()  # type: ignore[no-any-return]
