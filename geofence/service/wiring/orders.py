"""Wiring for click-and-collect: the ``orders`` consumer of the zone-event log and the pass over open
orders (positions, the clock), both in the worker (``bootstrap`` in ``geofence.service.runtime``)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from campaigns.order_tracking import OrderTracker
from campaigns.pickup import PickupPolicy
from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy
from geofence.service.loops import Loop
from geofence.service.settings import Settings
from geofence.service.wakeup import Wakeup

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

ORDERS_CONSUMER = "orders"


def pickup_policy(settings: Settings) -> PickupPolicy:
    return PickupPolicy(stale_after=timedelta(seconds=settings.orders.stale_after_s))


def extract_loader(settings: Settings) -> Any:
    """The street extract, read only when an order's store zone was drawn on the streets."""
    if settings.streets.extract_file is None:
        return None
    from geofence.service.streets import configured_extract

    return lambda: configured_extract(settings)


def order_tracker(runtime: Runtime) -> OrderTracker:
    return OrderTracker(
        runtime.engine,
        now=runtime.now,
        policy=pickup_policy(runtime.settings),
        on_events=runtime.wakeups.outbox.set,
    )  # a "ready" notice may have been queued


def order_loops(runtime: Runtime) -> list[Loop]:
    """The consumer, woken by each committed zone event; the pass every ``orders.track_every_s``."""
    scheduler, tracker = runtime.settings.scheduler, order_tracker(runtime)
    runner = ConsumerRunner(
        runtime.engine,
        Consumer(ORDERS_CONSUMER, tracker.handle),
        now=runtime.now,
        retry=RetryPolicy(
            max_attempts=scheduler.consumer_max_attempts,
            first_delay=timedelta(seconds=scheduler.consumer_retry_s),
        ),
    )

    return [
        Loop(
            f"consumer:{ORDERS_CONSUMER}",
            runner.run_once,
            runtime.wakeups.events.follower(),
            scheduler.events_poll_s,
            role="worker",
            settle_s=scheduler.side_loops_settle_s,  # off an offer's path (``loops.Loop``)
        ),
        Loop(
            "orders.track", tracker.run_once, Wakeup(), runtime.settings.orders.track_every_s, role="worker"
        ),
    ]
