"""presence heads: one versioned row per device; exits delete their presence row; fewer indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 13:25:00

Each device's presences get a head row whose version every write of them bumps (a worker validates its
cached copy of a device with one row) and which keeps the device's last fix (the late-fix guard that the
"outside" rows used to keep: they are folded into it and deleted).
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel.sql.sqltypes.AutoString)
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('presence_heads',
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('last_fix_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('device_id'),
    sqlite_with_rowid=False,
    )
    op.execute(
        "INSERT INTO presence_heads (device_id, version, last_fix_at) "
        "SELECT device_id, 1, MAX(last_fix_at) FROM presences GROUP BY device_id"
    )
    op.execute("DELETE FROM presences WHERE state = 'outside'")
    op.drop_index(op.f('ix_presences_last_fix_at'), table_name='presences')
    op.drop_index(op.f('ix_presences_state'), table_name='presences')


def downgrade() -> None:
    op.create_index(op.f('ix_presences_state'), 'presences', ['state'], unique=False)
    op.create_index(op.f('ix_presences_last_fix_at'), 'presences', ['last_fix_at'], unique=False)
    op.drop_table('presence_heads')
