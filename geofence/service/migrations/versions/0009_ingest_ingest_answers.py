"""ingest_answers: the answers of POST /v1/locations, kept a short while for retried requests

Revision ID: ingest_ingest_answers
Revises: hostile_a_rate_limits
Create Date: 2026-12-06 17:30:00

A retried request gets exactly the first answer per fix (geofence/service/ingest_answers.py). Unlogged
on PostgreSQL: a cache for retries, not worth a WAL flush per request.
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'ingest_ingest_answers'
down_revision: str | Sequence[str] | None = 'hostile_a_rate_limits'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ingest_answers',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('results', sa.Text(), nullable=False),
    sa.Column('events', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('key'),
    )
    op.create_index(op.f('ix_ingest_answers_created_at'), 'ingest_answers', ['created_at'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE ingest_answers SET UNLOGGED')


def downgrade() -> None:
    op.drop_index(op.f('ix_ingest_answers_created_at'), table_name='ingest_answers')
    op.drop_table('ingest_answers')
