"""Thin routers, one module per resource. Each module exposes ``router``."""

from __future__ import annotations

import importlib

from fastapi import APIRouter

ROUTER_MODULES = (
    "health",
    "locations",
    "zones",
    "devices",
    "customers",
    "suppressions",
    "links",
    "twilio",
    "campaigns",
    "deliveries",
    "exports",
    "consumers",
    "webhooks",
    "orders",
    "metrics",
)


def all_routers() -> list[APIRouter]:
    return [importlib.import_module(f"{__name__}.{name}").router for name in ROUTER_MODULES]
