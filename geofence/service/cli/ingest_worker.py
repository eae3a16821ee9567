"""CLI: ``geofence ingest-worker`` — ingest fixes from the bus (``GEOFENCE_BUS``), several per deployment."""

from __future__ import annotations

import gc
import signal
import threading

from geofence.service.cli.base import app, checked_settings, console, fail

GEN0_THRESHOLD = 50_000  # net new container objects between the collector's youngest passes (700 by default)


def settle_collector() -> None:
    """The garbage collector of a worker process, once started.

    The zone index and the rest of start-up live as long as the process: out of the collector's passes
    (``gc.freeze``), as the API processes do in their lifespan (``app.create_app``), for the same reason.
    Then the youngest generation's threshold: a batch makes and drops ~10 container objects a fix
    (decoded fixes, numpy views, rows, events), almost all freed by their reference counts, yet at the
    default 700 they set off ~2 young passes per 1,000 fixes and an old pass every ~65,000 over the
    device cache (measured on ``bench_bus_worker --rounds 64`` with the freeze: ~10 % of the worker's
    CPU in the collector, 1.0 s of 10; with 50,000: 0.2 s). Reference cycles are still collected, in
    fewer, larger passes."""
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])


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
    settle_collector()
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
