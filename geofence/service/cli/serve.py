"""CLI: run the API and the dispatcher/scheduler process."""

from __future__ import annotations

import signal
import threading

import typer

from geofence.service.cli.base import app, checked_settings, console, load_runtime


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Bind address."),
    port: int = typer.Option(8000, help="Port."),
    workers: int = typer.Option(1, help="uvicorn workers (run the dispatcher as its own process)."),
    jobs: bool = typer.Option(True, help="Also run the periodic jobs in this process (single-process mode)."),
) -> None:
    """Run the HTTP API (OpenAPI at /docs)."""
    import os

    import uvicorn

    if workers > 1 or not jobs:
        os.environ["GEOFENCE_SCHEDULER__ENABLED"] = "false"
    checked_settings()  # refuse a bad configuration here, with its reason, before uvicorn starts
    uvicorn.run(
        "geofence.service.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_level="info",
    )


@app.command()
def worker(
    metrics_port: int = typer.Option(
        0, envvar="GEOFENCE_WORKER_METRICS_PORT", help="Serve this process's /metrics on this port (0 = off)."
    ),
) -> None:
    """Run the dispatcher and the presence sweeps (one per deployment, next to the API workers)."""
    from geofence.service.jobs import build_scheduler
    from geofence.service.loops import start_loops

    runtime = load_runtime()
    if metrics_port:  # deliveries and dispatch lag are counted here, not in the API processes
        from prometheus_client import start_http_server

        from geofence.service.metrics import REGISTRY

        start_http_server(metrics_port, registry=REGISTRY)
    scheduler = build_scheduler(runtime, ("worker",))
    scheduler.start()
    loops = start_loops(runtime.loops, ("worker",), engine=runtime.engine, wakeups=runtime.wakeups)
    console.print(
        f"worker running {len(scheduler.get_jobs())} jobs and {len(loops.threads)} loops; Ctrl-C to stop"
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        loops.stop()
        scheduler.shutdown(wait=True)
        if runtime.nats is not None:
            runtime.nats.close()
