"""zone_events: no index on recorded_at (the live console tails the log by seq)

Revision ID: zone_events_no_recorded_at_index
Revises: zone_revision
Create Date: 2026-12-07 03:55:00

Every event written paid for one more B-tree; its one reader, the console's live view, now reads the
events after the last ``seq`` it showed (geofence/service/console/live_feed.py).
"""
from collections.abc import Sequence

from alembic import op

revision: str = 'zone_events_no_recorded_at_index'
down_revision: str | Sequence[str] | None = 'zone_revision'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(op.f('ix_zone_events_recorded_at'), table_name='zone_events')


def downgrade() -> None:
    op.create_index(op.f('ix_zone_events_recorded_at'), 'zone_events', ['recorded_at'], unique=False)
