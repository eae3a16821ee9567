"""rate_limits: request-rate buckets shared by every API process

Revision ID: hostile_a_rate_limits
Revises: hostile_b_send_safety
Create Date: 2026-12-06 14:00:00

One row per limited thing (API key, device, a client address's or key id's failed checks) holding its
GCRA theoretical arrival time, so that rate limits hold across processes (geofence/service/rate_limits.py).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'hostile_a_rate_limits'
down_revision: str | Sequence[str] | None = 'hostile_b_send_safety'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('rate_limits',
    sa.Column('tat_s', sa.Float(precision=53), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('allowed', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('name'),
    )


def downgrade() -> None:
    op.drop_table('rate_limits')
