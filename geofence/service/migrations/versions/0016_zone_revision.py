"""zone_revision: a counter every write of ``zones`` bumps, by trigger

Revision ID: zone_revision
Revises: nats_ingest_partitions
Create Date: 2026-12-07 03:40:00

The zone sync of every process reads this one row first and compares the zones' stamps only when it
moved (geofence/service/tables/zones.py, ``ZoneRevisionRow``).
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from geofence.service.tables.zones import revision_triggers

revision: str = 'zone_revision'
down_revision: str | Sequence[str] | None = 'nats_ingest_partitions'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('zone_revision',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('n', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.execute("INSERT INTO zone_revision (id, n) VALUES (1, 0)")
    for statement in revision_triggers(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for kind in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS zones_revision_{kind}")
    else:
        op.execute("DROP TRIGGER IF EXISTS zones_revision ON zones")
        op.execute("DROP FUNCTION IF EXISTS zones_revision_bump()")
    op.drop_table('zone_revision')
