"""Run every benchmark, one after the other: ``python -m bench [name ...] [--quick]``.

Each benchmark is also runnable alone (``python -m bench.bench_zones``); this runner only chains them
so one command prints every figure the issues ask for. ``--quick`` shrinks the workloads.
"""

from __future__ import annotations

import subprocess
import sys
import time

QUICK_ARGS = {
    "zones": ["--quick"],
    "scale": ["--sizes", "1000", "10000", "--no-mixed", "--no-compact", "--fixes", "100000"],
    "ingest": ["--zones", "2000", "--devices", "20000", "--rounds", "3", "--fixes", "60000",
               "--http-seconds", "5"],
    "decide": ["--decisions", "5000", "--deliveries", "1000", "--trickle", "200"],
    "consent": ["--customers", "5000", "--import-lines", "300"],
    "channels": ["--sms", "5000", "--messages", "200", "--twilio", "300"],
    "export": ["--rows", "100000", "--customers", "2000"],
    "security": ["--requests", "500"],
    "latency": ["--events", "100"],
    "crash": ["--kills", "10", "--events", "400"],
    "console": ["--zones", "2000", "--events", "20000", "--requests", "5"],
    "send_faults": ["--rows", "60", "--kills", "3", "--chaos-seconds", "5"],
    "isochrones": ["-n", "100"],
    "webhooks": ["--events", "500", "--latency-events", "100"],
    "bus": ["--ingest-workers", "1", "2", "--devices", "5000", "--http-seconds", "5",
            "--drain-timeout-s", "60"],
    "stream": ["--quick"],
    "route_cpu": ["--devices", "5000", "--timed", "300"],
}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("--")] or list(QUICK_ARGS)
    failed = []
    for name in names:
        args = QUICK_ARGS.get(name, []) if quick else []
        print(f"\n===== bench.bench_{name} {' '.join(args)}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", f"bench.bench_{name}", *args])
        print(f"===== bench_{name}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
