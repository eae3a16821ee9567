"""presence change feed: heads stamped with a clock tick; rows_version survives heartbeats

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:10:00

Every transaction that writes presence heads ticks ``presence_clock.seq`` and stamps its heads with the
tick, so a worker learns which of its cached devices changed with one query per batch instead of reading
every busy device's head. ``rows_version`` tells a heartbeat (only the last fix moved) from a change of the
device's presence rows.
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('presence_heads') as batch:
        batch.add_column(sa.Column('rows_version', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('seq', sa.BigInteger(), nullable=False, server_default='0'))
    op.execute("UPDATE presence_heads SET rows_version = version")
    op.create_index(op.f('ix_presence_heads_seq'), 'presence_heads', ['seq'], unique=False)
    op.create_table('presence_clock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('resets', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.execute("INSERT INTO presence_clock (id, seq, resets) VALUES (1, 0, 0)")


def downgrade() -> None:
    op.drop_table('presence_clock')
    op.drop_index(op.f('ix_presence_heads_seq'), table_name='presence_heads')
    with op.batch_alter_table('presence_heads') as batch:
        batch.drop_column('seq')
        batch.drop_column('rows_version')
