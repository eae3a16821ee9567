"""The webhook delivery log's retention: a settled message goes once it is that old, a pending one never."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from freezegun import freeze_time
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from geofence.service.runtime import bootstrap, jobs_for
from geofence.service.settings import Settings, WebhookSettings
from geofence.service.tables.webhooks import WebhookDeliveryRow
from geofence.service.webhook_retention import purge_webhook_deliveries, purge_webhook_deliveries_job

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def message(
    i: str,
    status: str,
    *,
    created: datetime = T0,
    due: datetime | None = None,
    delivered: datetime | None = None,
    attempts: int = 1,
) -> WebhookDeliveryRow:
    return WebhookDeliveryRow(
        id=i,
        endpoint_id="ep",
        event_id=f"evt-{i}",
        event_type="zone.entered",
        seq=0,
        occurred_at=created,
        payload="{}",
        status=status,
        attempts=attempts,
        next_attempt_at=due or created,
        created_at=created,
        delivered_at=delivered,
    )


def add(engine: Engine, *rows: WebhookDeliveryRow) -> None:
    with Session(engine) as s:
        s.add_all(rows)
        s.commit()


def kept(engine: Engine) -> set[str]:
    with Session(engine) as s:
        return set(s.execute(select(col(WebhookDeliveryRow.id))).scalars())


def test_settled_messages_past_the_retention_go_and_pending_or_younger_ones_stay(
    engine: Engine, settings: Settings
) -> None:
    add(
        engine,
        message("delivered-old", "delivered", delivered=T0 + timedelta(minutes=1)),
        message("parked-old", "parked", due=T0 + 3 * DAY),  # its last attempt, due 3 days on, gave up
        message("cancelled-old", "cancelled"),
        # created long ago but delivered late (its receiver was down): kept 30 days from its delivery
        message("delivered-late", "delivered", delivered=T0 + 5 * DAY),
        message("parked-late", "parked", due=T0 + 5 * DAY),
        # never tried (its endpoint disabled by a 410), or failing and waiting for its next attempt
        message("pending-never-tried", "pending", attempts=0),
        message("pending-retrying", "pending", attempts=9, due=T0 + 2 * DAY),
        # delivered once, then made pending again by a replay: its old delivered_at does not make it settled
        message("pending-replayed", "pending", delivered=T0 + timedelta(minutes=1), due=T0 + 31 * DAY),
    )
    runtime = bootstrap(settings.model_copy(update={"migrate_on_start": False}), engine)
    with freeze_time(T0 + 34 * DAY):
        assert purge_webhook_deliveries_job(runtime) == 3
    assert kept(engine) == {
        "delivered-late",
        "parked-late",
        "pending-never-tried",
        "pending-retrying",
        "pending-replayed",
    }
    with freeze_time(T0 + 36 * DAY):  # 31 days after the late ones settled; the pending ones still wait
        assert purge_webhook_deliveries_job(runtime) == 2
    assert kept(engine) == {"pending-never-tried", "pending-retrying", "pending-replayed"}
    with freeze_time(T0 + 3650 * DAY):
        assert purge_webhook_deliveries_job(runtime) == 0
    assert kept(engine) == {"pending-never-tried", "pending-retrying", "pending-replayed"}


def test_the_purge_deletes_in_bounded_chunks_each_committed_on_its_own(engine: Engine) -> None:
    add(
        engine,
        *(message(f"d{i}", "delivered", delivered=T0) for i in range(7)),
        *(message(f"p{i}", "parked") for i in range(4)),
        message("waiting", "pending"),
    )
    deleted: list[int] = []
    commits: list[int] = []

    def on_execute(conn: Any, statement: Any, *args: Any) -> None:
        if str(statement).lstrip().upper().startswith("DELETE FROM WEBHOOK_DELIVERIES"):
            deleted.append(args[-1].rowcount)  # the statement's result

    event.listen(engine, "after_execute", on_execute)
    event.listen(engine, "commit", lambda conn: commits.append(len(deleted)))
    try:
        with Session(engine) as s:
            assert purge_webhook_deliveries(s, before=T0 + DAY, chunk=3) == 11
    finally:
        event.remove(engine, "after_execute", on_execute)
    assert deleted == [3, 3, 1, 3, 1]  # delivered ones, then the given-up ones; never more than a chunk
    assert commits == [1, 2, 3, 4, 5]  # a commit after every chunk: no lock held across the purge
    assert kept(engine) == {"waiting"}


def test_the_purge_runs_in_the_worker_unless_messages_are_kept_for_ever(settings: Settings) -> None:
    assert settings.webhooks.delivery_retention_days == 30
    (job,) = [j for j in jobs_for(settings) if j.id == "webhooks.purge_deliveries"]
    assert job.role == "worker"
    forever = settings.model_copy(update={"webhooks": WebhookSettings(delivery_retention_days=0)})
    assert not [j for j in jobs_for(forever) if j.id == "webhooks.purge_deliveries"]
