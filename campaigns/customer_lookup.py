"""Resolve a customer or device id to its row, or raise ``NotFound``.

The reads every customer, device and consent use case starts with (an erased customer is not found
unless asked for). Kept apart so the consent ledger and the customer and device writes can share them
without importing each other.
"""

from __future__ import annotations

from sqlmodel import Session, select

from campaigns.customer_input import NotFound, storable
from campaigns.storage.customers import Customer, Device


def get_customer(session: Session, customer_id: str, *, allow_erased: bool = False) -> Customer:
    customer = session.get(Customer, storable(customer_id, "customer id"))
    if customer is None or (customer.erased_at is not None and not allow_erased):
        raise NotFound(f"unknown customer {customer_id[:64]!r}")
    return customer


def find_by_crm_id(session: Session, crm_id: str) -> Customer | None:
    return session.exec(select(Customer).where(Customer.crm_id == crm_id)).first()


def get_device(session: Session, device_id: str) -> Device:
    device = session.get(Device, storable(device_id, "device id"))
    if device is None:
        raise NotFound(f"unknown device {device_id[:64]!r}")
    return device


def customer_of_device(session: Session, device_id: str) -> Customer:
    device = get_device(session, device_id)
    if device.customer_id is None:
        raise NotFound(f"device {device_id[:64]!r} is not linked to a customer")
    return get_customer(session, device.customer_id)
