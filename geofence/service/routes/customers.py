"""Routes for marketers (scope ``admin``): customers, their consent history, access export, erasure
and CSV import. Business rules live in ``campaigns.customers`` / ``privacy`` / ``customer_import``.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlmodel import col, select

from campaigns import customers as uc
from campaigns.consent import Purpose, Source
from campaigns.customer_import import import_customers
from campaigns.privacy import erase_customer, export_customer
from geofence.service import clock
from geofence.service.deps import SessionDep, SettingsDep
from geofence.service.location_data import SqlLocationData
from geofence.service.metrics import CONSENT_CHANGES
from geofence.service.pagination import PageDep, Paginated
from geofence.service.security import Principal, require_scope
from geofence.service.tables._types import as_utc
from geofence.service.tables.customers import ConsentEvent, Customer, InboundMessage

router = APIRouter(tags=["customers"])

AdminPrincipal = Annotated[Principal, Depends(require_scope("admin"))]
CustomerId = Annotated[str, Path(min_length=1, max_length=64)]
MAX_IMPORT_BYTES = 20_000_000


class CustomerWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    crm_id: str | None = Field(default=None, max_length=128)
    phone: str | None = Field(default=None, max_length=40, description="E.164 or national format")
    first_name: str | None = Field(default=None, max_length=100)
    locale: str | None = Field(default=None, max_length=20)
    tz: str | None = Field(default=None, max_length=64)
    country: str | None = Field(default=None, max_length=2)
    subdivision: str | None = Field(default=None, max_length=16)
    attributes: dict[str, str | int | float | bool | None] | None = None
    max_offers_per_day: int | None = Field(default=None, ge=0, le=1000)
    max_offers_per_week: int | None = Field(default=None, ge=0, le=1000)


class CustomerPublic(BaseModel):
    id: str
    crm_id: str | None
    phone_e164: str | None
    first_name: str | None
    locale: str
    tz: str
    country: str
    subdivision: str | None
    attributes: dict[str, Any]
    max_offers_per_day: int | None
    max_offers_per_week: int | None
    erased_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None

    @classmethod
    def of(cls, row: Customer) -> CustomerPublic:
        data = row.model_dump()
        for name in ("erased_at", "created_at", "updated_at"):
            data[name] = as_utc(data[name])
        return cls.model_validate(data)


class ConsentWrite(BaseModel):
    purpose: Purpose
    granted: bool
    source: Source = Source.ADMIN
    wording: str | None = Field(default=None, max_length=2000)
    wording_version: str | None = Field(default=None, max_length=64)
    occurred_at: AwareDatetime | None = None
    evidence: dict[str, str | int | float | bool | None] | None = None


class ConsentEventPublic(BaseModel):
    id: str
    seq: int | None
    purpose: str
    granted: bool
    occurred_at: datetime
    recorded_at: datetime
    source: str
    wording: str | None
    wording_version: str | None
    recorded_by: str | None
    evidence: dict[str, Any]

    @classmethod
    def of(cls, row: ConsentEvent) -> ConsentEventPublic:
        data = row.model_dump()
        data["occurred_at"], data["recorded_at"] = as_utc(row.occurred_at), as_utc(row.recorded_at)
        return cls.model_validate(data)


class ConsentHistory(BaseModel):
    customer_id: str
    consents: dict[str, bool]
    ledger: list[ConsentEventPublic]


class ImportLine(BaseModel):
    line: int
    reason: str


class ImportResult(BaseModel):
    lines: int
    created: int
    updated: int
    consents_recorded: int
    errors: list[ImportLine]
    suppressed: list[ImportLine]
    ignored_columns: list[str]


class InboundPublic(BaseModel):
    message_sid: str
    from_masked: str | None
    customer_ids: list[str]
    intent: str
    keyword: str | None
    needs_review: bool
    body: str | None
    received_at: datetime


def _fail(exc: uc.CustomerError) -> HTTPException:
    if isinstance(exc, uc.NotFound):
        return HTTPException(404, str(exc))
    if isinstance(exc, uc.Suppressed):
        return HTTPException(409, str(exc))
    return HTTPException(422, str(exc))


def _write(session: SessionDep, body: CustomerWrite, hash_key: str, customer_id: str | None) -> Customer:
    data = uc.CustomerInput(
        crm_id=body.crm_id, phone=body.phone, first_name=body.first_name, locale=body.locale, tz=body.tz,
        country=body.country, subdivision=body.subdivision, attributes=body.attributes,
    )  # fmt: skip
    at = clock.now()
    try:
        customer, _ = uc.upsert_customer(session, data, at=at, hash_key=hash_key, customer_id=customer_id)
        if "max_offers_per_day" in body.model_fields_set or "max_offers_per_week" in body.model_fields_set:
            uc.set_cadence(session, customer.id, per_day=body.max_offers_per_day,
                           per_week=body.max_offers_per_week, at=at)  # fmt: skip
        session.commit()
    except uc.CustomerError as exc:
        session.rollback()
        raise _fail(exc) from exc
    return customer


@router.get("/v1/customers")
def list_customers(
    session: SessionDep, page: PageDep, _: AdminPrincipal, include_erased: bool = False
) -> Paginated[CustomerPublic]:
    query = select(Customer)
    if not include_erased:
        query = query.where(col(Customer.erased_at).is_(None))
    rows = session.exec(query.order_by(col(Customer.id)).offset(page.offset).limit(page.limit + 1)).all()
    return page.build(rows, CustomerPublic.of)


@router.post("/v1/customers", status_code=201)
def create_customer(
    body: CustomerWrite, session: SessionDep, settings: SettingsDep, _: AdminPrincipal
) -> CustomerPublic:
    """Create a customer; with a ``crm_id`` that already exists, that customer is updated instead."""
    return CustomerPublic.of(_write(session, body, settings.hash_key.get_secret_value(), None))


@router.get("/v1/customers/{customer_id}")
def get_customer(customer_id: CustomerId, session: SessionDep, _: AdminPrincipal) -> CustomerPublic:
    try:
        return CustomerPublic.of(uc.get_customer(session, customer_id, allow_erased=True))
    except uc.CustomerError as exc:
        raise _fail(exc) from exc


@router.patch("/v1/customers/{customer_id}")
def update_customer(
    customer_id: CustomerId,
    body: CustomerWrite,
    session: SessionDep,
    settings: SettingsDep,
    _: AdminPrincipal,
) -> CustomerPublic:
    return CustomerPublic.of(_write(session, body, settings.hash_key.get_secret_value(), customer_id))


@router.delete("/v1/customers/{customer_id}")
def erase(customer_id: CustomerId, session: SessionDep, principal: AdminPrincipal) -> dict[str, Any]:
    """Erase the customer's personal data (right to erasure); their number stays suppressed as a hash."""
    try:
        counts = erase_customer(
            session, customer_id, at=clock.now(), location=SqlLocationData(),
            recorded_by=f"key:{principal.key_id}",
        )
        session.commit()
    except uc.CustomerError as exc:
        session.rollback()
        raise _fail(exc) from exc
    return {"customer_id": customer_id, "erased": True, **counts}


@router.get("/v1/customers/{customer_id}/export")
def export(customer_id: CustomerId, session: SessionDep, _: AdminPrincipal) -> dict[str, Any]:
    """Everything held on one customer (right of access), as JSON."""
    try:
        return export_customer(session, customer_id, at=clock.now(), location=SqlLocationData())
    except uc.CustomerError as exc:
        raise _fail(exc) from exc


@router.get("/v1/customers/{customer_id}/consents")
def consent_history(customer_id: CustomerId, session: SessionDep, _: AdminPrincipal) -> ConsentHistory:
    try:
        state = uc.current_consent(session, customer_id, at=clock.now())
    except uc.CustomerError as exc:
        raise _fail(exc) from exc
    return ConsentHistory(
        customer_id=customer_id,
        consents={p.value: v for p, v in state.items()},
        ledger=[ConsentEventPublic.of(e) for e in uc.ledger(session, customer_id)],
    )


@router.post("/v1/customers/{customer_id}/consents", status_code=201)
def record_consent(
    customer_id: CustomerId, body: ConsentWrite, session: SessionDep, principal: AdminPrincipal
) -> ConsentEventPublic:
    """Record a grant or withdrawal collected elsewhere (store, call centre, web form)."""
    if body.source is Source.SMS_KEYWORD:
        raise HTTPException(422, "sms_keyword entries come from the Twilio webhook only")
    try:
        event, _ = uc.record_consent(
            session, customer_id=customer_id, purpose=body.purpose, granted=body.granted,
            source=body.source, at=clock.now(), occurred_at=body.occurred_at, wording=body.wording,
            wording_version=body.wording_version, recorded_by=f"key:{principal.key_id}",
            evidence=body.evidence,
        )  # fmt: skip
        session.commit()
    except uc.CustomerError as exc:
        session.rollback()
        raise _fail(exc) from exc
    CONSENT_CHANGES.labels(purpose=body.purpose.value, granted=str(body.granted).lower(),
                           source=body.source.value).inc()  # fmt: skip
    return ConsentEventPublic.of(event)


@router.post(
    "/v1/customers/import",
    openapi_extra={
        "requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}, "required": True}
    },
)
async def import_csv(request: Request, session: SessionDep, settings: SettingsDep, principal: AdminPrincipal
                     ) -> ImportResult:  # fmt: skip
    """Import customers and consents from a CSV body (``Content-Type: text/csv``, UTF-8)."""
    raw = await request.body()
    if len(raw) > MAX_IMPORT_BYTES:
        raise HTTPException(413, f"CSV larger than {MAX_IMPORT_BYTES} bytes: use the CLI")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HTTPException(400, f"the CSV is not UTF-8 (byte {exc.start})") from exc
    from starlette.concurrency import run_in_threadpool

    def run() -> ImportResult:
        try:
            report = import_customers(
                session, io.StringIO(text, newline=""), at=clock.now(),
                hash_key=settings.hash_key.get_secret_value(), recorded_by=f"import:key:{principal.key_id}",
            )  # fmt: skip
            session.commit()
        except uc.CustomerError as exc:
            session.rollback()
            raise HTTPException(422, str(exc)) from exc
        return ImportResult(
            lines=report.lines, created=report.created, updated=report.updated,
            consents_recorded=report.consents_recorded,
            errors=[ImportLine(line=p.line, reason=p.reason) for p in report.errors],
            suppressed=[ImportLine(line=p.line, reason=p.reason) for p in report.suppressed],
            ignored_columns=report.ignored_columns,
        )  # fmt: skip

    return await run_in_threadpool(run)


@router.get("/v1/inbound-sms")
def list_inbound(
    session: SessionDep, page: PageDep, _: AdminPrincipal, needs_review: bool | None = None
) -> Paginated[InboundPublic]:
    """Inbound SMS, newest first; ``?needs_review=true`` lists the fuzzy opt-outs for a human to read."""
    query = select(InboundMessage)
    if needs_review is not None:
        query = query.where(InboundMessage.needs_review == needs_review)
    rows = session.exec(
        query.order_by(col(InboundMessage.received_at).desc(), col(InboundMessage.id))
        .offset(page.offset).limit(page.limit + 1)
    ).all()  # fmt: skip
    return page.build(rows, lambda r: InboundPublic.model_validate(
        {**r.model_dump(), "received_at": as_utc(r.received_at)}))  # fmt: skip


@router.post("/v1/inbound-sms/{message_sid}/reviewed")
def mark_reviewed(
    message_sid: Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$")],
    session: SessionDep,
    _: AdminPrincipal,
) -> InboundPublic:
    """Take a message off the review queue (the opt-out it caused, if any, stays: only START undoes it)."""
    row = session.exec(select(InboundMessage).where(InboundMessage.message_sid == message_sid)).first()
    if row is None:
        raise HTTPException(404, f"unknown message {message_sid!r}")
    if row.reviewed_at is None:
        row.reviewed_at = clock.now()
        row.needs_review = False
        session.add(row)
        session.commit()
    return InboundPublic.model_validate({**row.model_dump(), "received_at": as_utc(row.received_at)})
