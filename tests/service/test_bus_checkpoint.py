"""The checkpoints of a batch that covers several partitions, on PostgreSQL: moved together in the batch's
transaction, and fenced together — one partition moved on by another worker fails the whole batch."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from geofence.service.bus.checkpoint import Move, PartitionLost, move_checkpoints, read_checkpoint
from geofence.service.db import ConnectionUnit
from tests.service.processes import fresh_postgres

pytestmark = [pytest.mark.postgres]
AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    with fresh_postgres(pg_url.rsplit("/", 1)[0] + "/postgres") as url:
        made = create_engine(url)
        yield made
        made.dispose()


def rows(engine: Engine) -> dict[int, tuple[int, int, str]]:
    with engine.connect() as conn:
        found = conn.execute(text("SELECT partition, stream_seq, fixes, owner FROM ingest_partitions"))
        return {p: (seq, fixes, owner) for p, seq, fixes, owner in found}


def test_one_transaction_moves_every_partition_of_the_batch(engine: Engine) -> None:
    assert [read_checkpoint(engine, p) for p in range(3)] == [0, 0, 0]
    with ConnectionUnit(engine) as unit:
        move_checkpoints(unit, {2: Move(0, 9, 4), 0: Move(0, 7, 3)}, owner="w1", at=AT)
        unit.commit()
    assert rows(engine) == {0: (7, 3, "w1"), 1: (0, 0, ""), 2: (9, 4, "w1")}


def test_a_partition_another_worker_moved_on_fails_the_batch_and_is_named(engine: Engine) -> None:
    for p in range(3):
        read_checkpoint(engine, p)
    with ConnectionUnit(engine) as unit:  # the successor of a stalled worker, on partition 1
        move_checkpoints(unit, {1: Move(0, 5, 2)}, owner="w2", at=AT)
        unit.commit()
    with ConnectionUnit(engine) as unit, pytest.raises(PartitionLost) as lost:
        move_checkpoints(unit, {p: Move(0, 6 + p, 1) for p in range(3)}, owner="w1", at=AT)
    assert lost.value.partition == 1
    assert rows(engine) == {0: (0, 0, ""), 1: (5, 2, "w2"), 2: (0, 0, "")}  # nothing of the batch
