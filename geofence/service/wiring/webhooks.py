"""Wiring for outbound webhooks: the ``webhooks`` consumer of the zone-event log (enqueue), the
``store_arrivals`` consumer (arrival alerts, ``campaigns.arrivals``), the relay of
store-side events (``outbound_events``) and the sender loop, all in the worker (``bootstrap`` in
``geofence.service.runtime`` adds them)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session

from campaigns.arrivals import WaitingOrder, alert_arrival, no_waiting_order
from campaigns.orders import order_waiting
from geofence.events import ZoneEvent
from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy
from geofence.service.loops import Loop
from geofence.service.webhook_store_events import StoreEventRelay
from geofence.service.webhooks import WebhookEnqueuer, WebhookSender

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

WEBHOOK_CONSUMER = "webhooks"
ARRIVALS_CONSUMER = "store_arrivals"


def webhook_consumer(runtime: Runtime) -> ConsumerRunner:
    scheduler = runtime.settings.scheduler
    return ConsumerRunner(
        runtime.engine,
        Consumer(WEBHOOK_CONSUMER, WebhookEnqueuer(runtime.engine, now=runtime.now).handle),
        now=runtime.now,
        after_pass=runtime.wakeups.webhooks.set,
        retry=RetryPolicy(
            max_attempts=scheduler.consumer_max_attempts,
            first_delay=timedelta(seconds=scheduler.consumer_retry_s),
        ),
    )


def webhook_sender(runtime: Runtime) -> WebhookSender:
    conf = runtime.settings.webhooks
    return WebhookSender(
        runtime.engine,
        now=runtime.now,
        timeout_s=conf.timeout_s,
        allow_private=conf.allow_private_targets,
        threads=conf.threads,
    )


def store_event_relay(runtime: Runtime) -> StoreEventRelay:
    return StoreEventRelay(runtime.engine, now=runtime.now, after_pass=runtime.wakeups.webhooks.set)


class ArrivalAlerts:
    """The ``store_arrivals`` consumer's handler: one short transaction per zone event. ``waiting_order``
    is the orders module's hook (None: no order is ever shown)."""

    def __init__(self, runtime: Runtime, waiting_order: WaitingOrder = no_waiting_order) -> None:
        self.engine, self.now, self.waiting_order = runtime.engine, runtime.now, waiting_order

    def handle(self, event: ZoneEvent) -> str:
        with Session(self.engine) as session:
            outcome = alert_arrival(session, event, at=self.now(), waiting_order=self.waiting_order)
            session.commit()
        return outcome


def arrival_consumer(runtime: Runtime, waiting_order: WaitingOrder = no_waiting_order) -> ConsumerRunner:
    scheduler = runtime.settings.scheduler
    return ConsumerRunner(
        runtime.engine,
        Consumer(ARRIVALS_CONSUMER, ArrivalAlerts(runtime, waiting_order).handle),
        now=runtime.now,
        after_pass=runtime.wakeups.store_events.set,
        retry=RetryPolicy(
            max_attempts=scheduler.consumer_max_attempts,
            first_delay=timedelta(seconds=scheduler.consumer_retry_s),
        ),
    )


def webhook_loops(runtime: Runtime) -> list[Loop]:
    """Enqueue on each committed event (its own follower of the events signal), send on each enqueue;
    the sender's poll (1 s) catches retries coming due. Store-side events are committed by many
    writers (dispatcher, API, inbound SMS): the relay follows the outbox signal (most of them are
    delivery status changes) and polls; the arrivals consumer wakes it."""
    poll = runtime.settings.scheduler.events_poll_s
    settle = runtime.settings.scheduler.side_loops_settle_s  # off an offer's path (``loops.Loop``)
    intake = Loop(
        f"consumer:{WEBHOOK_CONSUMER}",
        webhook_consumer(runtime).run_once,
        runtime.wakeups.events.follower(),
        poll,
        role="worker",
        settle_s=settle,
    )
    if runtime.nats is not None:  # the bus: a durable JetStream consumer shared by every worker
        from geofence.service.wiring.event_bus import stream_consumer_loop

        intake = stream_consumer_loop(
            runtime, Consumer(WEBHOOK_CONSUMER, WebhookEnqueuer(runtime.engine, now=runtime.now).handle),
            after_pass=runtime.wakeups.webhooks.set,
        )
    return [
        intake,
        Loop(
            f"consumer:{ARRIVALS_CONSUMER}",
            arrival_consumer(runtime, waiting_order=order_waiting).run_once,  # the order waiting there
            runtime.wakeups.events.follower(),
            poll,
            role="worker",
            settle_s=settle,
        ),
        Loop(
            "webhooks.store_events",
            store_event_relay(runtime).run_once,
            runtime.wakeups.store_events,
            poll,
            role="worker",
        ),
        Loop("webhooks.send", webhook_sender(runtime).run_once, runtime.wakeups.webhooks, 1.0, role="worker"),
    ]
