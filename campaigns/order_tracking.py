"""Following the customers of open orders: the ``orders`` consumer of the zone-event log, and a pass
over open orders that feeds them their devices' positions and the clock.

What the state machine is fed, in time order per order (``campaigns.pickup``):

- the positions of the customer's devices: raw fixes (the ``location_fixes`` table, kept only when
  ``ingest.fix_retention_s > 0``) read after the order's cursor, and the rounded position (~100 m) of
  each of their zone events — the only positions there are when fixes are not kept;
- the enters and dwells of their zone events (``arrived``, ``arrived_at_wrong_store``);
- a ``Tick`` at each observation's time and at the pass's ``now`` (``ready``, and the schedule
  standing in for a phone that stopped sharing).

A zone event is handled once per order even if the log hands it again (the state machine fires each
event once); an order another writer moved first is read again (``StaleOrder``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from campaigns.order_zones import is_other_store, load_zone
from campaigns.orders import StaleOrder, advance, open_order_ids
from campaigns.pickup import OPEN, Entered, Observation, OrderEvent, PickupPolicy, Seen, Tick
from campaigns.storage.columns import as_utc
from campaigns.storage.customers import Device
from campaigns.storage.geofence_views import LOCATION_FIXES
from campaigns.storage.orders import OrderRow
from geofence.events import TransitionKind, ZoneEvent

log = logging.getLogger(__name__)

ZONE_EVENT_ACCURACY_M = 100.0  # a zone event's position is rounded to 3 decimals (~110 m)
REREAD = timedelta(seconds=30)  # fixes committed late with an earlier receive time are read again
MAX_FIXES = 5000  # per order and pass
ATTEMPTS = 3
_RANK = {Tick: 0, Seen: 1, Entered: 2}


def _ordered(observations: list[Observation]) -> list[Observation]:
    """In time order, each preceded by a tick at its time (what was due then happens first)."""
    out: list[Observation] = []
    for obs in sorted(observations, key=lambda o: (o.at, _RANK.get(type(o), 3))):
        out += [Tick(obs.at), obs]
    return out


class OrderTracker:
    """``handle(event)`` is the log consumer's handler; ``run_once()`` the periodic pass."""

    def __init__(
        self,
        engine: Engine,
        *,
        now: Callable[[], datetime],
        policy: PickupPolicy | None = None,
        batch: int = 500,
        on_events: Callable[[], None] | None = None,
    ) -> None:
        self.engine, self.now, self.batch = engine, now, batch
        self.policy = policy or PickupPolicy()
        self.on_events = on_events  # after a commit that fired events (wake the dispatcher: a notice)

    # -- the zone-event log consumer ----------------------------------------------------------------
    def handle(self, event: ZoneEvent) -> list[OrderEvent]:
        if not event.device_id:
            return []
        for _ in range(ATTEMPTS):
            with Session(self.engine, expire_on_commit=False) as session:
                customer_id = session.execute(
                    select(col(Device.customer_id)).where(col(Device.id) == event.device_id)
                ).scalar()
                if not customer_id:
                    return []
                rows = list(
                    session.execute(
                        select(OrderRow).where(
                            col(OrderRow.customer_id) == customer_id, col(OrderRow.status).in_(OPEN)
                        )
                    ).scalars()
                )
                if not rows:
                    return []
                try:
                    fired = [
                        e
                        for row in rows
                        for e in self._advance(session, row, self._from_event(session, row, event))
                    ]
                except StaleOrder:
                    session.rollback()
                    continue
                session.commit()
                if fired and self.on_events is not None:
                    self.on_events()
                return fired
        raise StaleOrder(f"orders of device {event.device_id} kept moving")

    def _from_event(self, session: Session, row: OrderRow, event: ZoneEvent) -> list[Observation]:
        found: list[Observation] = []
        if event.lat is not None and event.lng is not None:
            found.append(Seen(event.at, event.lat, event.lng, ZONE_EVENT_ACCURACY_M))
        if event.kind in (TransitionKind.ENTER, TransitionKind.DWELL):
            zone = load_zone(session, event.zone_id)
            other = zone is not None and is_other_store(zone, load_zone(session, row.store_zone_id))
            found.append(Entered(event.at, event.zone_id, other_store=other))
        return found

    # -- the periodic pass --------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Every open order, a page of ``batch`` at a time: new positions, then the clock."""
        after = ""
        while True:
            with Session(self.engine) as session:
                ids = open_order_ids(session, after=after, limit=self.batch)
            for order_id in ids:
                self._pass_one(order_id)
            if len(ids) < self.batch:
                return False
            after = ids[-1]

    def _pass_one(self, order_id: str) -> None:
        for _ in range(ATTEMPTS):
            with Session(self.engine, expire_on_commit=False) as session:
                row = session.get(OrderRow, order_id)
                if row is None or row.status not in OPEN:
                    return
                try:
                    fired = self._advance(session, row, [], tick=True)
                except StaleOrder:
                    session.rollback()
                    continue
                session.commit()
                if fired and self.on_events is not None:
                    self.on_events()
                return

    def _advance(
        self, session: Session, row: OrderRow, extra: list[Observation], *, tick: bool = False
    ) -> list[OrderEvent]:
        at = self.now()
        fixes, read_until = self._fixes(session, row)
        observations = _ordered([*fixes, *extra])
        if tick:
            observations.append(Tick(at))
        return advance(session, row, observations, at=at, policy=self.policy, fixes_read_at=read_until)

    def _fixes(self, session: Session, row: OrderRow) -> tuple[list[Observation], datetime | None]:
        """The customer's devices' raw fixes received since the order's cursor (minus ``REREAD``), and
        the new cursor (None: unchanged)."""
        devices = list(
            session.execute(
                select(col(Device.id)).where(col(Device.customer_id) == row.customer_id)
            ).scalars()
        )
        if not devices:
            return [], None
        fixes = LOCATION_FIXES.c
        cursor = as_utc(row.fixes_read_at) or as_utc(row.created_at)
        assert cursor is not None
        earliest = (as_utc(row.created_at) or cursor) - self.policy.early
        found = session.execute(
            select(fixes.lat, fixes.lng, fixes.accuracy_m, fixes.recorded_at, fixes.received_at)
            .where(
                fixes.device_id.in_(devices),
                fixes.received_at > cursor - REREAD,
                fixes.recorded_at >= earliest,
            )
            .order_by(fixes.recorded_at)
            .limit(MAX_FIXES)
        ).all()
        if not found:
            return [], None
        seen: list[Observation] = [Seen(f.recorded_at, f.lat, f.lng, f.accuracy_m) for f in found]
        newest = max(f.received_at for f in found)
        return seen, max(newest, cursor)
