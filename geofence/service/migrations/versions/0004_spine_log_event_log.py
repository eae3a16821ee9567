"""zone events as a durable log: the log's sequence in commit order, consumers' cursors and failures

Revision ID: spine_log_event_log
Revises: 0003
Create Date: 2026-12-06 14:20:00

``presence_clock.events`` hands out ``zone_events.seq`` under the clock's row lock (commit order);
``event_consumers`` keeps each consumer's cursor, ``consumer_failures`` the events it is retrying or
has parked. Events written before this revision have no ``seq`` and are not read by the log.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel  # noqa: F401  (autogenerate renders sqlmodel.sql.sqltypes.AutoString)
from alembic import op

revision: str = 'spine_log_event_log'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('presence_clock') as batch:
        batch.add_column(sa.Column('events', sa.BigInteger(), nullable=False, server_default='0'))
    op.create_table('event_consumers',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('cursor_seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('name'),
    )
    op.create_table('consumer_failures',
    sa.Column('consumer', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('parked_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('consumer', 'event_id'),
    )
    op.create_index(op.f('ix_consumer_failures_next_attempt_at'), 'consumer_failures', ['next_attempt_at'],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_consumer_failures_next_attempt_at'), table_name='consumer_failures')
    op.drop_table('consumer_failures')
    op.drop_table('event_consumers')
    with op.batch_alter_table('presence_clock') as batch:
        batch.drop_column('events')
