"""What a timed phase cost PostgreSQL: its backends' CPU, WAL, transactions, tuples and index scans.

``bench_ingest --database-url postgresql…`` reports the API's CPU a request; when two commits differ in
throughput but not there, the difference is in the database. ``snapshot(url)`` reads, for the URL's
database: the CPU of its backends (``bench.cpu_roles``: a floor, a backend that exits takes its CPU
along), ``pg_stat_wal`` (records, full-page images, bytes: the cluster's, shared with other users of the
box), ``pg_stat_database`` (commits, rollbacks, tuples, blocks) and ``pg_stat_user_tables`` per table
(inserts, updates, HOT updates, deletes, index and sequential scans). ``per_request(before, after, n)``
divides the differences by the requests of the phase. PostgreSQL flushes a backend's counters when its
transaction ends, at most once a second, so a reading taken right after a phase may miss its last
second; take the closing reading after the backends are gone (their exit flushes them) and the CPU
reading before.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

from bench.cpu_roles import cpu_by_role

_DATABASE = ("xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned", "tup_fetched",
             "tup_inserted", "tup_updated", "tup_deleted")
_TABLE = ("seq_scan", "seq_tup_read", "idx_scan", "idx_tup_fetch", "n_tup_ins", "n_tup_upd", "n_tup_hot_upd",
          "n_tup_del")


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _connect(url: str):
    import psycopg

    parts = urlsplit(url.replace("+psycopg", "").replace("+psycopg2", ""))
    return psycopg.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 5432,
                           user=parts.username or "postgres", dbname=database_of(url), autocommit=True)


def counters(url: str) -> dict[str, float]:
    """The statistics views' counters (no CPU), flattened to ``name`` / ``table.name``."""
    out: dict[str, float] = {}
    with _connect(url) as conn:
        row = conn.execute(f"SELECT {', '.join(_DATABASE)} FROM pg_stat_database"
                           " WHERE datname = current_database()").fetchone()
        out.update(zip(_DATABASE, map(float, row or ()), strict=False))
        wal = conn.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal").fetchone()
        out.update(zip(("wal_records", "wal_fpi", "wal_bytes"), map(float, wal or ()), strict=False))
        for name, *values in conn.execute(f"SELECT relname, {', '.join(_TABLE)} FROM pg_stat_user_tables"):
            out.update({f"{name}.{k}": float(v or 0) for k, v in zip(_TABLE, values, strict=True)})
    return out


def backend_cpu_s(url: str) -> dict[str, float]:
    roles = cpu_by_role([], database_of(url))
    return {"cpu_s_backends": roles["postgres_db"], "cpu_s_background": roles["postgres_background"]}


def snapshot(url: str) -> dict[str, float]:
    return {**backend_cpu_s(url), **counters(url)}


def snapshot_to(url: str, path: str) -> None:
    """For a barrier's action in another process: the reading goes to a file."""
    Path(path).write_text(json.dumps(snapshot(url)))


def per_request(before: dict[str, float], after: dict[str, float], requests: int) -> dict[str, float]:
    """Differences a request, the counters that moved only (CPU in ms, WAL in bytes)."""
    out = {}
    for key, value in after.items():
        delta = value - before.get(key, 0.0)
        if delta:
            scale = 1000.0 if key.startswith("cpu_s_") else 1.0
            name = key.replace("cpu_s_", "cpu_ms_") if key.startswith("cpu_s_") else key
            out[name] = round(scale * delta / max(1, requests), 3)
    return out
