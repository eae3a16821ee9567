"""Wiring for zone events on the bus (``GEOFENCE_BUS`` set): the relay from the database log to the
stream, and each log consumer as a durable JetStream consumer (``geofence.service.event_stream``).
Without the bus none of this is built: consumers keep their database cursor."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from geofence.service.event_log import Consumer, RetryPolicy
from geofence.service.event_stream import RELAY, EventRelay, LazyBridge, StreamConsumer
from geofence.service.loops import Loop

if TYPE_CHECKING:
    from geofence.service.runtime import Runtime

IDLE_S = 0.2  # between two empty pulls (each pull already waits up to a second for messages)


def bus_connection(runtime: Runtime) -> LazyBridge:
    assert runtime.nats is not None, "GEOFENCE_BUS is not set"
    return runtime.nats


def relay_loop(runtime: Runtime) -> Loop:
    """Woken by each committed event (``NOTIFY`` on PostgreSQL), like the database consumers."""
    conf = runtime.settings.event_stream
    relay = EventRelay(runtime.engine, bus_connection(runtime), conf, now=runtime.now)
    return Loop(f"consumer:{RELAY}", relay.run_once, runtime.wakeups.events.follower(),
                runtime.settings.scheduler.events_poll_s, role="worker")


def stream_consumer_loop(
    runtime: Runtime, consumer: Consumer, *, threads: int = 1,
    after_event: Callable[[], None] | None = None, after_pass: Callable[[], None] | None = None,
) -> Loop:
    """The consumer ``consumer.name`` on the stream, shared by every worker process that runs it."""
    scheduler = runtime.settings.scheduler
    runner = StreamConsumer(
        runtime.engine, consumer, bus_connection(runtime), runtime.settings.event_stream, now=runtime.now,
        threads=threads, after_event=after_event, after_pass=after_pass,
        retry=RetryPolicy(max_attempts=scheduler.consumer_max_attempts,
                          first_delay=timedelta(seconds=scheduler.consumer_retry_s)),
    )
    return Loop(f"consumer:{consumer.name}", runner.run_once, runtime.wakeups.events.follower(), IDLE_S,
                role="worker")
