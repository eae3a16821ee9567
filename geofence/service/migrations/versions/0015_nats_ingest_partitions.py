"""ingest_partitions: where each partition of the JetStream fixes stream stands

Revision ID: nats_ingest_partitions
Revises: export_zone_event_queue
Create Date: 2026-12-06 17:00:00

One row per partition of the partitioned ingest (GEOFENCE_BUS): the last stream sequence whose fixes
are committed, written in the same transaction as their presences and zone events
(geofence/service/bus/checkpoint.py).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'nats_ingest_partitions'
down_revision: str | Sequence[str] | None = 'export_zone_event_queue'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ingest_partitions',
    sa.Column('partition', sa.Integer(), nullable=False),
    sa.Column('stream_seq', sa.BigInteger(), nullable=False),
    sa.Column('fixes', sa.BigInteger(), nullable=False),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('partition'),
    )


def downgrade() -> None:
    op.drop_table('ingest_partitions')
