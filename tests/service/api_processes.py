"""Real ``geofence serve`` processes on free loopback ports, for what must hold across processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

CLI = "from geofence.service.cli import main; main()"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_processes(
    count: int, env: dict[str, str], cwd: Path, timeout_s: float = 120.0
) -> Iterator[list[str]]:
    """Start ``count`` API processes (no jobs) with ``env``; yields their base URLs; stops them by PID.

    Their logs go to ``cwd/api-<port>.log``: a pipe nobody reads while they run fills up (64 KiB, a few
    hundred requests' log lines) and then blocks the process in its next write."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFENCE_")}
    full_env.update(env)
    procs, urls, logs = [], [], []
    try:
        for _ in range(count):
            port = free_port()
            logs.append(Path(cwd) / f"api-{port}.log")
            serve = ["serve", "--host", "127.0.0.1", "--port", str(port), "--no-jobs"]
            with logs[-1].open("wb") as log:
                procs.append(subprocess.Popen(
                    [sys.executable, "-c", CLI, *serve], env=full_env, cwd=cwd,
                    stdout=subprocess.DEVNULL, stderr=log,
                ))  # fmt: skip
            urls.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + timeout_s
        for proc, url, log_path in zip(procs, urls, logs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"API process exited: {log_path.read_text(errors='replace')[-2000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"API process at {url} did not start in {timeout_s} s")
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
