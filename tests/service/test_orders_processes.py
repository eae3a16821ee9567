"""Several worker processes following the same open orders on PostgreSQL fire each order's events once:
the order row's version and the events' unique key hold across processes (docs/orders.md,
*Consistency*); one notice per order."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from campaigns.orders import OrderInput, create_order
from campaigns.pickup import PickupPolicy
from campaigns.storage.deliveries import Delivery
from campaigns.storage.orders import OrderEventRow
from campaigns.storage.outbound_events import OutboundEventRow
from geofence.service import clock
from geofence.service.db import make_engine
from geofence.service.tables.zones import ZoneRow
from tests.service.campaign_factories import add_customer
from tests.service.processes import fresh_postgres
from zones.model import Circle, Zone

pytestmark = pytest.mark.postgres

ORDERS = 40
PROCESSES = 3
FOLLOW = """
import sys
from campaigns.order_tracking import OrderTracker
from geofence.service import clock
from geofence.service.db import make_engine
tracker = OrderTracker(make_engine(sys.argv[1]), now=clock.now, batch=10)
for _ in range(2):
    tracker.run_once()
"""


def test_worker_processes_racing_on_the_same_orders_fire_each_event_once(pg_url, tmp_path):
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        engine = make_engine(url)
        now = clock.now()
        placed = now - timedelta(hours=1)  # ready 50 min ago, expected 40 min ago, never seen: both due
        zone = Zone("store-1", "Store", Circle(48.85, 2.35, 50.0), store_id="S1")
        with Session(engine) as session:
            session.add(
                ZoneRow(
                    id=zone.id,
                    name=zone.name,
                    store_id="S1",
                    data=zone.to_dict(),
                    created_at=placed,
                    updated_at=placed,
                )
            )
            session.commit()
            add_customer(session, placed, cid="cust1", device_id="dev1", consents=())
            for i in range(ORDERS):
                create_order(
                    session,
                    OrderInput(
                        id=f"P-{i:03d}",
                        customer_id="cust1",
                        store_zone_id="store-1",
                        ready_at=placed + timedelta(minutes=10),
                        pickup_from=placed + timedelta(minutes=20),
                    ),
                    at=placed,
                    policy=PickupPolicy(),
                    default_minutes=5,
                    default_profile="walk",
                )
            session.commit()
        procs = [
            subprocess.Popen([sys.executable, "-c", FOLLOW, url], stderr=subprocess.PIPE)
            for _ in range(PROCESSES)
        ]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err.decode()[-2000:]
        with Session(engine) as session:
            per_type = dict(
                session.execute(select(OrderEventRow.type, func.count()).group_by(OrderEventRow.type)).all()
            )
            logged = dict(
                session.execute(
                    select(OutboundEventRow.type, func.count())
                    .where(OutboundEventRow.type.like("order.%"))
                    .group_by(OutboundEventRow.type)
                ).all()
            )
            notices = session.execute(select(func.count()).select_from(Delivery)).scalar()
        engine.dispose()
    assert per_type == {"order.ready": ORDERS, "order.approaching": ORDERS}
    assert logged == per_type
    assert notices == ORDERS
