"""Wiring for outbound webhooks: the ``webhooks`` consumer of the zone-event log (enqueue) and the
sender loop, both in the worker (``bootstrap`` in ``geofence.service.runtime`` adds them)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from geofence.service.event_log import Consumer, ConsumerRunner, RetryPolicy
from geofence.service.loops import Loop
from geofence.service.webhooks import WebhookEnqueuer, WebhookSender

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

WEBHOOK_CONSUMER = "webhooks"


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


def webhook_loops(runtime: Runtime) -> list[Loop]:
    """Enqueue on each committed event (its own follower of the events signal), send on each enqueue;
    the sender's poll (1 s) catches retries coming due."""
    poll = runtime.settings.scheduler.events_poll_s
    intake = Loop(
        f"consumer:{WEBHOOK_CONSUMER}",
        webhook_consumer(runtime).run_once,
        runtime.wakeups.events.follower(),
        poll,
        role="worker",
    )
    if runtime.nats is not None:  # the bus: a durable JetStream consumer shared by every worker
        from geofence.service.wiring.event_bus import stream_consumer_loop

        intake = stream_consumer_loop(
            runtime, Consumer(WEBHOOK_CONSUMER, WebhookEnqueuer(runtime.engine, now=runtime.now).handle),
            after_pass=runtime.wakeups.webhooks.set,
        )
    return [
        intake,
        Loop("webhooks.send", webhook_sender(runtime).run_once, runtime.wakeups.webhooks, 1.0, role="worker"),
    ]
