"""CPU seconds per role of a bus deployment on this machine, read from ``/proc`` (Linux).

``cpu_by_role`` sums user + system time of: the ingest workers (their process groups), the NATS server
(every ``nats-server`` process: the local one is shared with other users of the box), PostgreSQL backends
connected to one database (``postgres: … <db> …`` in their title) and PostgreSQL's own background
processes (postmaster, WAL writer, checkpointer…: shared too), and the whole machine's busy time
(``/proc/stat``), so what the roles leave out (other engineers' jobs, the kernel's softirqs) shows as the
difference. Two readings give a phase's map; a process that exits between them takes its CPU along
(PostgreSQL backends of short-lived connections), so the PostgreSQL figure is a floor.
"""

from __future__ import annotations

import os

BACKGROUND = ("checkpointer", "background writer", "walwriter", "autovacuum launcher",
              "logical replication launcher", "stats collector")


def _processes() -> list[tuple[int, int, str, str, float]]:
    """(pid, process group, command name, command line, CPU seconds) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                head, _, tail = f.read().rpartition(")")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = tail.split()
        comm = head.partition("(")[2]
        out.append((int(entry), int(fields[2]), comm, cmdline, (int(fields[11]) + int(fields[12])) / tick))
    return out


def machine_busy_s() -> float:
    """CPU seconds the machine spent not idle (all cores, since boot)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(worker_groups: list[int], database: str) -> dict[str, float]:
    roles = {"workers": 0.0, "nats": 0.0, "postgres_db": 0.0, "postgres_background": 0.0}
    for _pid, pgrp, comm, cmdline, cpu_s in _processes():
        if pgrp in worker_groups:
            roles["workers"] += cpu_s
        elif comm == "nats-server":
            roles["nats"] += cpu_s
        elif comm == "postgres" or cmdline.startswith("postgres:"):
            if f" {database} " in f"{cmdline} ":
                roles["postgres_db"] += cpu_s
            elif not cmdline.startswith("postgres:") or any(b in cmdline for b in BACKGROUND):
                roles["postgres_background"] += cpu_s
    roles["machine"] = machine_busy_s()
    return roles


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}
