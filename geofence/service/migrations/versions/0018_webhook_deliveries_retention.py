"""webhook_deliveries: index (status, delivered_at) for the retention purge, in place of (status)

Revision ID: webhook_deliveries_retention
Revises: zone_events_no_recorded_at_index
Create Date: 2026-12-07 06:20:00

The worker's ``webhooks.purge_deliveries`` job reads the messages delivered before the retention; with an
index on status alone that read walks every delivered message, the bulk of the table, on each pass. The
composite index serves it as a range, and its status prefix every read by status the old index served, so
a delivery write still maintains one index for its status.
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'webhook_deliveries_retention'
down_revision: str | Sequence[str] | None = 'zone_events_no_recorded_at_index'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index('ix_webhook_deliveries_status_delivered_at', 'webhook_deliveries',
                    ['status', 'delivered_at'], unique=False)
    op.drop_index(op.f('ix_webhook_deliveries_status'), table_name='webhook_deliveries')


def downgrade() -> None:
    op.create_index(op.f('ix_webhook_deliveries_status'), 'webhook_deliveries', ['status'], unique=False)
    op.drop_index('ix_webhook_deliveries_status_delivered_at', table_name='webhook_deliveries')
