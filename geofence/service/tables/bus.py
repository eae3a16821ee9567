"""Table: where each partition of the fixes stream stands (``geofence.service.bus``).

Owner: the partitioned ingest (``geofence.service.bus.checkpoint``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel

from geofence.service.tables._types import utc_column


class IngestPartitionRow(SQLModel, table=True):
    """One per partition: every message of the stream up to ``stream_seq`` on its subject has been
    ingested, its presences and zone events committed in the same transaction as this row. A worker
    writes it only ``WHERE stream_seq = <what it read>``: a worker that lost the partition (its lease ran
    out while it was stalled) cannot commit over the new owner's work."""

    __tablename__ = "ingest_partitions"

    partition: int = Field(primary_key=True)
    stream_seq: int = Field(default=0, sa_type=BigInteger)
    fixes: int = Field(default=0, sa_type=BigInteger)  # ingested so far: throughput and lag, by sampling
    owner: str = Field(default="", max_length=200)  # the worker that wrote it last (host-pid-tag)
    updated_at: datetime | None = utc_column()
