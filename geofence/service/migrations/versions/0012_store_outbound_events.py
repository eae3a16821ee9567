"""store: the store-side event log (outbound_events, its clock and cursors); webhook deliveries name
their stream (zone | store);
endpoints may be limited to zones (a store's own feed); store arrivals (one alert per visit)

Revision ID: store_outbound_events
Revises: ingest_ingest_answers
Create Date: 2026-12-06 17:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'store_outbound_events'
down_revision: str | Sequence[str] | None = 'ingest_ingest_answers'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('outbound_events',
    sa.Column('seq', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('device_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('seq'),
    sa.UniqueConstraint('id'),
    )
    op.create_index(op.f('ix_outbound_events_type'), 'outbound_events', ['type'], unique=False)
    op.create_index(op.f('ix_outbound_events_subject_id'), 'outbound_events', ['subject_id'], unique=False)
    op.create_index(op.f('ix_outbound_events_occurred_at'), 'outbound_events', ['occurred_at'], unique=False)
    op.create_index(op.f('ix_outbound_events_customer_id'), 'outbound_events', ['customer_id'], unique=False)
    op.create_index(op.f('ix_outbound_events_device_id'), 'outbound_events', ['device_id'], unique=False)
    op.create_table('outbound_event_clock',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    )
    op.execute("INSERT INTO outbound_event_clock (id, seq) VALUES (1, 0)")
    op.create_table('outbound_event_cursors',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('cursor_seq', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name'),
    )
    op.create_table('store_arrivals',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('zone_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('visit_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('customer_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('alerted_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('zone_id', 'visit_id', name='uq_store_arrival_visit'),
    )
    op.create_index(op.f('ix_store_arrivals_zone_id'), 'store_arrivals', ['zone_id'], unique=False)
    op.create_index(op.f('ix_store_arrivals_customer_id'), 'store_arrivals', ['customer_id'], unique=False)
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.add_column(sa.Column('stream', sqlmodel.sql.sqltypes.AutoString(), server_default='zone',
                                   nullable=False))
    with op.batch_alter_table('webhook_endpoints') as batch:
        batch.add_column(sa.Column('zone_ids', sa.JSON(), server_default='[]', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('webhook_endpoints') as batch:
        batch.drop_column('zone_ids')
    with op.batch_alter_table('webhook_deliveries') as batch:
        batch.drop_column('stream')
    op.drop_index(op.f('ix_store_arrivals_customer_id'), table_name='store_arrivals')
    op.drop_index(op.f('ix_store_arrivals_zone_id'), table_name='store_arrivals')
    op.drop_table('store_arrivals')
    op.drop_table('outbound_event_cursors')
    op.drop_table('outbound_event_clock')
    op.drop_index(op.f('ix_outbound_events_occurred_at'), table_name='outbound_events')
    op.drop_index(op.f('ix_outbound_events_customer_id'), table_name='outbound_events')
    op.drop_index(op.f('ix_outbound_events_device_id'), table_name='outbound_events')
    op.drop_index(op.f('ix_outbound_events_subject_id'), table_name='outbound_events')
    op.drop_index(op.f('ix_outbound_events_type'), table_name='outbound_events')
    op.drop_table('outbound_events')
