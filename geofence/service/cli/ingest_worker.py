"""CLI: ``geofence ingest-worker`` — ingest fixes from the bus (``GEOFENCE_BUS``), several per deployment."""

from __future__ import annotations

import gc
import signal
import threading

from geofence.service.cli.base import app, checked_settings, console, fail


@app.command("ingest-worker")
def ingest_worker() -> None:
    """Ingest the fixes of the partitions this process leases (run as many as the load needs)."""
    from geofence.service.bus.link import NatsLink
    from geofence.service.bus.worker import run_until_stopped
    from geofence.service.loops import start_loops
    from geofence.service.runtime import bootstrap
    from geofence.service.wiring.zone_catalogue import zones_sync_loop

    settings = checked_settings()
    if not settings.bus:
        raise fail("GEOFENCE_BUS is not set: with no bus, every API process ingests its own fixes")
    # the worker is the embedded ingest behind the bus: its own GeofenceService writes the database
    runtime = bootstrap(settings.model_copy(update={"bus": ""}))
    sync = zones_sync_loop(runtime.geofence, poll_s=settings.scheduler.config_poll_s)
    loops = start_loops([sync], ("ingest",), engine=runtime.engine, wakeups=runtime.wakeups)
    link = NatsLink(settings.bus, settings.partitioned)
    # the zone index and the rest of start-up live as long as the process: out of the collector's passes,
    # as the API processes do in their lifespan (``app.create_app``), for the same reason
    gc.freeze()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    partitions = settings.partitioned.partitions
    console.print(f"ingest worker on {settings.bus}, {partitions} partitions; Ctrl-C to stop")
    try:
        run_until_stopped(runtime.geofence, link, stop)
    except KeyboardInterrupt:
        pass
    finally:
        loops.stop()
        link.close()
