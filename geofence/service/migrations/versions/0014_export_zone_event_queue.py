"""export_zone_events: the daily CRM export takes zone events from the log's ``crm_export`` consumer

Revision ID: export_zone_event_queue
Revises: orders_click_and_collect
Create Date: 2026-12-06 17:30:00

Until now the daily export read zone events after a time cursor kept in ``export_cursors``; from now on
the consumer queues each event once per file format (campaigns/export/zone_event_queue.py). So that the
switch exports nothing twice and misses nothing, each format's queue starts as the old cursor left it:
the logged events at or before the cursor are marked exported (the consumer, starting from the log's
beginning, then finds them already queued), and events older than the log (no ``seq``, which the consumer
never sees) after the cursor are queued for the next run.
"""
import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'export_zone_event_queue'
down_revision: str | Sequence[str] | None = 'orders_click_and_collect'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FORMATS = ("csv", "ndjson")
EVENTS = sa.table(
    "zone_events", sa.column("id", sa.String), sa.column("seq", sa.BigInteger),
    sa.column("at", sa.DateTime(timezone=True)), sa.column("recorded_at", sa.DateTime(timezone=True)),
)
QUEUE = sa.table(
    "export_zone_events", sa.column("format", sa.String), sa.column("event_id", sa.String),
    sa.column("queued_at", sa.DateTime(timezone=True)), sa.column("batch", sa.String),
    sa.column("exported_at", sa.DateTime(timezone=True)),
)
CURSORS = sa.table(
    "export_cursors", sa.column("kind", sa.String), sa.column("format", sa.String),
    sa.column("cursor", sa.String), sa.column("last_file", sa.String),
)


def _position(token: str) -> tuple[datetime, str]:
    """(change time in UTC, event id) from the old cursor (campaigns/export/cursor.py, version 1)."""
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return datetime.fromisoformat(payload["t"]).astimezone(UTC), str(payload["id"])


def _seed(fmt: str, token: str | None, last_file: str | None, now: datetime) -> None:
    changed = sa.func.coalesce(EVENTS.c.recorded_at, EVENTS.c.at)
    pending = [EVENTS.c.seq.is_(None)]
    if token:
        t, row_id = _position(token)
        done = sa.or_(changed < t, sa.and_(changed == t, EVENTS.c.id <= row_id))
        op.execute(QUEUE.insert().from_select(
            ["format", "event_id", "queued_at", "batch", "exported_at"],
            sa.select(sa.literal(fmt), EVENTS.c.id, sa.literal(now, sa.DateTime(timezone=True)),
                      sa.literal(last_file or "(before the log)"), sa.literal(now, sa.DateTime(timezone=True)))
            .where(EVENTS.c.seq.is_not(None), done),
        ))
        pending.append(sa.not_(done))
    op.execute(QUEUE.insert().from_select(
        ["format", "event_id", "queued_at"],
        sa.select(sa.literal(fmt), EVENTS.c.id, sa.literal(now, sa.DateTime(timezone=True))).where(*pending),
    ))


def upgrade() -> None:
    op.create_table('export_zone_events',
    sa.Column('format', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('queued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('batch', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('exported_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('format', 'event_id'),
    )
    op.create_index(op.f('ix_export_zone_events_batch'), 'export_zone_events', ['batch'], unique=False)
    now = datetime.now(UTC)
    cursors = {
        r.format: (r.cursor, r.last_file)
        for r in op.get_bind().execute(
            sa.select(CURSORS.c.format, CURSORS.c.cursor, CURSORS.c.last_file)
            .where(CURSORS.c.kind == "zone_events")
        )
    }
    for fmt in FORMATS:
        token, last_file = cursors.get(fmt, (None, None))
        _seed(fmt, token, last_file, now)


def downgrade() -> None:
    op.drop_index(op.f('ix_export_zone_events_batch'), table_name='export_zone_events')
    op.drop_table('export_zone_events')
