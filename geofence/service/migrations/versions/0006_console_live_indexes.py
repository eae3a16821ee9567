"""console: index the write times the live view tails (zone_events.recorded_at, deliveries.created_at)

Revision ID: console_live_indexes
Revises: webhooks_webhooks
Create Date: 2026-12-06 14:20:00

The console's live stream reads "rows written since the last poll" every second; without these indexes
each poll scanned and sorted the whole tables (~330 ms at 100,000 zone events). The deliveries list,
newest first, uses the same index.
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'console_live_indexes'
down_revision: str | Sequence[str] | None = 'webhooks_webhooks'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f('ix_zone_events_recorded_at'), 'zone_events', ['recorded_at'], unique=False)
    op.create_index(op.f('ix_deliveries_created_at'), 'deliveries', ['created_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_deliveries_created_at'), table_name='deliveries')
    op.drop_index(op.f('ix_zone_events_recorded_at'), table_name='zone_events')
