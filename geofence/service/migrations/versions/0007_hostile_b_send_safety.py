"""deliveries: send_started_at (a send in flight is never repeated blindly), index on reason;
suppressions: phone_masked and an index on created_at (the admin list); inbound_messages: the review
decision and who took it

Revision ID: hostile_b_send_safety
Revises: console_live_indexes
Create Date: 2026-12-06 14:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'hostile_b_send_safety'
down_revision: str | Sequence[str] | None = 'console_live_indexes'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries') as batch:
        batch.add_column(sa.Column('send_started_at', sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f('ix_deliveries_reason'), 'deliveries', ['reason'], unique=False)
    with op.batch_alter_table('suppressions') as batch:
        batch.add_column(sa.Column('phone_masked', sa.String(), nullable=True))
    op.create_index(op.f('ix_suppressions_created_at'), 'suppressions', ['created_at'], unique=False)
    with op.batch_alter_table('inbound_messages') as batch:
        batch.add_column(sa.Column('review_decision', sa.String(), nullable=True))
        batch.add_column(sa.Column('reviewed_by', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages') as batch:
        batch.drop_column('reviewed_by')
        batch.drop_column('review_decision')
    op.drop_index(op.f('ix_suppressions_created_at'), table_name='suppressions')
    with op.batch_alter_table('suppressions') as batch:
        batch.drop_column('phone_masked')
    op.drop_index(op.f('ix_deliveries_reason'), table_name='deliveries')
    with op.batch_alter_table('deliveries') as batch:
        batch.drop_column('send_started_at')
