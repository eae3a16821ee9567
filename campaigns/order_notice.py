"""Click-and-collect: the "ready for pickup at <store>" notice through the outbox (a transactional
message: its own consent purpose and hours, ``campaigns.transactional``), and the ``order_updates``
grant a first order records."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel import Session, col

from campaigns.consent import Purpose, Source
from campaigns.order_zones import load_zone
from campaigns.outbox import PURPOSE_KEY, enqueue
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import ConsentEvent, Customer, Device
from campaigns.storage.deliveries import CANCELLED, PENDING, SKIPPED, WAITING_STATUSES, Delivery
from campaigns.storage.orders import OrderRow
from campaigns.transactional import KEY_PREFIX, ready_text, transactional_send_at

READY_KEY = KEY_PREFIX + "order:{}:ready"


def ready_notice(session: Session, row: OrderRow, *, ready_at: datetime, at: datetime) -> Delivery | None:
    """Queue the "ready for pickup at <store>" notice (push to the newest device with a live token,
    else SMS), due at the transactional hours rule's time; a notice that cannot go is recorded as
    skipped with its reason. Idempotent by ``order:<id>:ready``."""
    if not row.notify:
        return None
    customer = session.get(Customer, row.customer_id)
    zone = load_zone(session, row.store_zone_id)
    device = (
        session.execute(
            select(Device)
            .where(
                col(Device.customer_id) == row.customer_id,
                col(Device.push_token).is_not(None),
                col(Device.push_token_active).is_(True),
            )
            .order_by(col(Device.updated_at).desc().nulls_last(), col(Device.id))
            .limit(1)
        )
        .scalars()
        .first()
    )
    channel = (
        "push" if device is not None else "sms" if customer is not None and customer.phone_e164 else None
    )
    locale = customer.locale if customer is not None else None
    title, body = ready_text(locale, order_ref=row.id, store_name=zone.name if zone else row.store_zone_id)
    tz = customer.tz if customer is not None and customer.tz else zone.tz if zone else "UTC"
    delivery = Delivery(
        idempotency_key=READY_KEY.format(row.id),
        campaign_id=None,
        customer_id=row.customer_id,
        device_id=device.id if channel == "push" and device is not None else None,
        channel=channel or "push",
        status=PENDING if channel else SKIPPED,
        reason="order_ready" if channel else "no_channel",
        locale=locale,
        title=title,
        body=body,
        data={
            "order_id": row.id,
            "store_zone_id": row.store_zone_id,
            PURPOSE_KEY: Purpose.ORDER_UPDATES.value,
        },
        due_at=transactional_send_at(max(ready_at, at), tz, any_hour=row.notify_any_hour),
        expires_at=as_utc(row.pickup_until),
        created_at=at,
        updated_at=at,
    )
    return delivery if enqueue(session, delivery) else None


def withdraw_notice(session: Session, order_id: str, *, reason: str, at: datetime) -> None:
    """The order is closed: a notice still waiting is cancelled (with the reason)."""
    session.execute(
        update(Delivery)
        .where(
            col(Delivery.idempotency_key) == READY_KEY.format(order_id),
            col(Delivery.status).in_(WAITING_STATUSES),
        )
        .values(status=CANCELLED, reason=reason, updated_at=at)
    )


def grant_order_updates(session: Session, customer_id: str, order_id: str, at: datetime) -> None:
    """A customer's first order records the ``order_updates`` grant (the order asks for its notice);
    a customer who withdrew it keeps it withdrawn: only an empty ledger for the purpose is filled."""
    has = session.execute(
        select(func.count())
        .select_from(ConsentEvent)
        .where(
            col(ConsentEvent.customer_id) == customer_id,
            col(ConsentEvent.purpose) == Purpose.ORDER_UPDATES.value,
        )
    ).scalar()
    if has:
        return
    top = session.execute(
        select(func.max(ConsentEvent.seq)).where(col(ConsentEvent.customer_id) == customer_id)
    ).scalar()
    session.add(
        ConsentEvent(
            seq=int(top or 0) + 1,
            customer_id=customer_id,
            purpose=Purpose.ORDER_UPDATES.value,
            granted=True,
            occurred_at=at,
            recorded_at=at,
            source=Source.API.value,
            evidence={"order_id": order_id},
        )
    )
