"""Consent benchmark: the location consent gate on the ingest path, keyword matching, CSV import.

    .venv/bin/python bench/bench_consent.py                       # SQLite file in a temp dir
    .venv/bin/python bench/bench_consent.py --customers 20000 --url postgresql+psycopg://postgres@127.0.0.1/bench

Figures printed:

- ``location_consented_devices`` calls/s and devices/s for batches of 1,000 device ids (what
  ``POST /v1/locations`` pays per batch) over N customers with one device and a 2–3 entry ledger;
- ``keywords.match`` bodies/s over a mix of keywords, fuzzy opt-outs and ordinary texts;
- CSV import lines/s (each line its own savepoint, with three consent columns).
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import insert, text
from sqlmodel import Session

from campaigns.consent import Purpose
from campaigns.customer_import import import_customers
from campaigns.customers import location_consented_devices
from campaigns.keywords import match
from geofence.service.db import create_schema, make_engine
from geofence.service.tables.customers import ConsentEvent, Customer, Device

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BODIES = ["STOP", "stop merci", "Arrêt", "Merci, à demain !", "yes", "is the store open on sunday?",
          "please stop texting me", "HELP", "stopwatch", "Désabonner."]  # fmt: skip


def seed(engine, customers: int) -> list[str]:
    """N customers with one device each; every one granted location_offers, 30 % withdrew it since."""
    rng = random.Random(7)
    people, devices, ledger = [], [], []
    for i in range(customers):
        cid, did = f"c{i:07d}", f"d{i:07d}"
        people.append({"id": cid, "locale": "fr", "tz": "Europe/Paris", "country": "FR", "attributes": {}})
        devices.append({"id": did, "customer_id": cid, "platform": "android", "push_token_active": True})
        base = {"customer_id": cid, "purpose": Purpose.LOCATION_OFFERS.value, "recorded_at": AT,
                "source": "app_screen", "evidence": {}}  # fmt: skip
        granted_at, withdrawn_at = AT - timedelta(days=30), AT - timedelta(days=3)
        ledger.append({**base, "id": f"g{i}", "seq": 1, "granted": True, "occurred_at": granted_at})
        if rng.random() < 0.3:
            ledger.append({**base, "id": f"w{i}", "seq": 2, "granted": False, "occurred_at": withdrawn_at})
    with engine.begin() as conn:
        conn.execute(insert(Customer.__table__), people)
        conn.execute(insert(Device.__table__), devices)
        conn.execute(insert(ConsentEvent.__table__), ledger)
    if engine.dialect.name == "postgresql":  # planner statistics, as autovacuum would have them in production
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    return [d["id"] for d in devices]


def bench_filter(engine, device_ids: list[str], calls: int) -> None:
    rng = random.Random(1)
    start = time.perf_counter()
    kept = 0
    for _ in range(calls):
        batch = set(rng.sample(device_ids, min(1000, len(device_ids))))
        with Session(engine) as s:
            kept += len(location_consented_devices(s, batch, at=AT))
    elapsed = time.perf_counter() - start
    print(f"location filter: {calls / elapsed:,.1f} batches/s of 1,000 ids = "
          f"{calls * 1000 / elapsed:,.0f} device ids/s ({kept / calls:.0f} kept per batch)")


def bench_keywords(n: int) -> None:
    start = time.perf_counter()
    for i in range(n):
        match(BODIES[i % len(BODIES)])
    elapsed = time.perf_counter() - start
    print(f"keyword match: {n / elapsed:,.0f} bodies/s")


def bench_import(engine, lines: int) -> None:
    rows = ["crm_id,phone,first_name,sms_marketing,push_marketing,location_offers,consent_at"]
    rows += [f"imp{i},+336{i:08d},N{i},yes,yes,no,2025-01-01T00:00:00Z" for i in range(lines)]
    text = "\n".join(rows) + "\n"
    start = time.perf_counter()
    with Session(engine) as s:
        report = import_customers(s, io.StringIO(text), at=AT, hash_key="bench")
        s.commit()
    elapsed = time.perf_counter() - start
    print(f"csv import: {lines / elapsed:,.0f} lines/s ({report.created} created, {report.failed} rejected)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--import-lines", type=int, default=2_000)
    parser.add_argument("--url", default=None, help="database URL (default: a SQLite file in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.url or f"sqlite:///{tmp}/bench.db")
        create_schema(engine)
        t0 = time.perf_counter()
        device_ids = seed(engine, args.customers)
        print(f"seeded {args.customers:,} customers/devices in {time.perf_counter() - t0:.1f}s "
              f"({engine.dialect.name})")
        bench_filter(engine, device_ids, args.calls)
        bench_keywords(100_000)
        bench_import(engine, args.import_lines)
        engine.dispose()


if __name__ == "__main__":
    main()
