"""The location feed's thread coalesces waiting requests: consecutive ones with no device in common are
ingested as one batch, and each still gets exactly its own results and its own devices' events."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import HTTPException
from freezegun import freeze_time

from geofence.service.app import create_app
from geofence.service.location_feed import FeedJob, LocationFeed
from geofence.service.routes.locations import prepare, render, replay
from tests.geofence.tracks import STORE, offset
from zones.model import Circle, Zone

NOW = datetime(2026, 3, 14, 10, 0, tzinfo=UTC)


def fix(device_id: str, north_m: float = 0.0, t: datetime = NOW, **kw: object) -> dict[str, object]:
    lat, lng = offset(*STORE, north_m, 0.0)
    at = t.isoformat()
    return {"device_id": device_id, "lat": lat, "lng": lng, "accuracy_m": 10, "recorded_at": at, **kw}


@pytest.fixture
def runtime(settings, engine):
    app = create_app(settings, engine=engine)
    runtime = app.state.runtime
    runtime.geofence.location_consent = None
    runtime.geofence.save_zones([Zone("store", "Store", Circle(*STORE, 60))], at=NOW)
    return runtime


def serve(feed: LocationFeed, runtime, bodies: list[bytes]) -> list[object]:
    """Serve these bodies as if they had waited in the queue together; their answers (or errors)."""
    loop = asyncio.new_event_loop()
    try:
        jobs = [FeedJob(loop, loop.create_future(), runtime, None, body) for body in bodies]
        feed.serve(jobs)
        loop.run_until_complete(asyncio.sleep(0))
        return [json.loads(j.future.result()) if j.future.exception() is None else j.future.exception()
                for j in jobs]
    finally:
        loop.close()


def test_requests_without_common_devices_share_one_batch_and_keep_their_own_answers(runtime):
    feed = LocationFeed(prepare, render, replay)
    later = NOW + timedelta(seconds=5)
    bodies = [
        json.dumps({"fixes": [fix("dev-1"), fix("dev-2", north_m=5_000)]}).encode(),
        json.dumps({"fixes": [fix("dev-3"), fix("dev-4", lat="north")]}).encode(),  # undecodable 2nd fix
        b"{not json",
        json.dumps({"fixes": [fix("dev-1", t=later), fix("dev-5", north_m=5_000)]}).encode(),  # dev-1 again
    ]
    with freeze_time(NOW + timedelta(seconds=10)):
        a, b, bad, c = serve(feed, runtime, bodies)
    assert feed.batches == 2 and feed.requests == 3  # a and b together; c after them (it shares dev-1)
    assert [r["status"] for r in a["results"]] == ["accepted", "accepted"]
    assert [(e["device_id"], e["kind"]) for e in a["events"]] == [("dev-1", "enter")]
    assert b["results"][0] == {"status": "accepted", "reason": None}
    assert b["results"][1]["status"] == "rejected" and b["results"][1]["reason"].startswith("invalid")
    assert [(e["device_id"], e["kind"]) for e in b["events"]] == [("dev-3", "enter")]
    assert isinstance(bad, HTTPException) and bad.status_code == 422
    assert c["accepted"] == 2 and c["events"] == []  # dev-1 already inside: as if c came alone, after a


def test_the_answer_key_digests_the_body_only_where_answers_are_kept(runtime):
    body = json.dumps(fix("dev-1")).encode()
    key = prepare(runtime, None, body)[2]
    assert len(key) == 64 and key != prepare(runtime, None, json.dumps(fix("dev-2")).encode())[2]
    runtime.geofence.answer_retention = timedelta(0)  # nothing kept: no digest of the body
    assert prepare(runtime, None, body)[2] == ""
    runtime.geofence.answer_retention = timedelta(minutes=15)
    runtime.geofence.publisher = object()  # on the bus: a retry is de-duplicated by its message id
    assert prepare(runtime, None, body)[2] == ""


def test_a_request_alone_is_its_own_batch(runtime):
    feed = LocationFeed(prepare, render, replay)
    with freeze_time(NOW):
        (only,) = serve(feed, runtime, [json.dumps(fix("dev-9")).encode()])
    assert only["accepted"] == 1 and feed.batches == 1


class PoisonedService:
    """The real presence service, except that a batch holding ``poison``'s fix fails the way a database
    refusal would. A stand-in for failures the decoder cannot foresee: what matters is that one
    request's failure stays its own."""

    def __init__(self, real, poison: str) -> None:
        self.real, self.poison, self.calls = real, poison, 0

    @property
    def keeps_answers(self) -> bool:
        return self.real.keeps_answers

    def ingest(self, fixes, *, at, refused, answered=()):
        self.calls += 1
        if any(f.device_id == self.poison for i, f in enumerate(fixes) if i not in refused):
            raise RuntimeError("the database refused this batch")
        return self.real.ingest(fixes, at=at, refused=refused, answered=answered)


def test_a_failing_request_never_fails_the_requests_merged_with_it(runtime):
    feed = LocationFeed(prepare, render, replay)
    poisoned = PoisonedService(runtime.geofence, poison="dev-bad")
    runtime.geofence = poisoned
    bodies = [json.dumps(fix(f"dev-{i}")).encode() for i in range(5)]
    bodies.insert(2, json.dumps(fix("dev-bad")).encode())
    with freeze_time(NOW):
        answers = serve(feed, runtime, bodies)
    failed = answers.pop(2)
    assert isinstance(failed, RuntimeError)
    assert [a["accepted"] for a in answers] == [1] * 5  # each served alone after the merged batch failed
    assert poisoned.calls == 1 + 6
    assert feed.requests == 6


def test_a_nul_in_a_device_id_rejects_that_fix_alone(runtime):
    feed = LocationFeed(prepare, render, replay)
    bodies = [
        json.dumps({"fixes": [fix("dev-1"), fix("dev\u0000x"), fix("dev-2", client_fix_id="a\u0000")]})
        .encode(),
        json.dumps(fix("dev\u0000y")).encode(),
        json.dumps(fix("dev-3")).encode(),
    ]
    assert b"\\u0000" in bodies[0]
    with freeze_time(NOW):
        batch, single, other = serve(feed, runtime, bodies)
    assert [r["status"] for r in batch["results"]] == ["accepted", "rejected", "rejected"]
    assert "NUL" in batch["results"][1]["reason"] and "client_fix_id" in batch["results"][2]["reason"]
    assert isinstance(single, HTTPException) and single.status_code == 422 and "NUL" in single.detail
    assert other["accepted"] == 1


@pytest.fixture
def jobs(runtime):
    """Makes ``n`` jobs of ``runtime`` (empty bodies: only their order is looked at), on one event loop;
    the ingest's group wait set to 5 s, far longer than a companion 50 ms later takes to come."""
    runtime.settings.ingest.group_wait_ms = 5_000
    loop = asyncio.new_event_loop()
    yield lambda n: [FeedJob(loop, loop.create_future(), runtime, None, b"{}") for _ in range(n)]
    loop.close()


def _take_while_one_more_arrives(feed: LocationFeed, first: FeedJob, later: FeedJob, *, busy: bool):
    """``take`` with ``first`` queued and ``later`` queued by another thread 50 ms after it began."""
    feed._queue.put(first)
    timer = threading.Timer(0.05, feed._queue.put, args=(later,))
    timer.start()
    try:
        return feed.take(busy=busy)
    finally:
        timer.join()


def test_under_load_a_lone_request_waits_for_a_second_to_share_its_batch(jobs):
    """Requests waited through the last batch (``busy``): a lone request waits up to
    ``ingest.group_wait_ms`` for a companion, and the two are served as one batch."""
    feed = LocationFeed(prepare, render, replay)
    first, later = jobs(2)
    assert _take_while_one_more_arrives(feed, first, later, busy=True) == [first, later]


def test_a_request_never_waits_when_the_feed_was_not_busy_or_the_wait_is_off(runtime, jobs):
    feed = LocationFeed(prepare, render, replay)
    first, later = jobs(2)
    assert _take_while_one_more_arrives(feed, first, later, busy=False) == [first]  # it did not wait
    assert feed.take(busy=False) == [later]
    runtime.settings.ingest.group_wait_ms = 0  # busy, but the operator turned the wait off
    first, later = jobs(2)
    assert _take_while_one_more_arrives(feed, first, later, busy=True) == [first]
    assert feed.take(busy=True) == [later]  # alone and nothing else comes: served after the wait (0)


def test_requests_already_waiting_are_taken_together_without_waiting_for_more(jobs):
    feed = LocationFeed(prepare, render, replay)
    waiting = jobs(3)
    for job in waiting:
        feed._queue.put(job)
    assert feed.take(busy=True) == waiting  # at once: two or more need no companion


def test_the_feed_is_loaded_when_requests_came_together_or_waited_through_a_batch(jobs):
    feed = LocationFeed(prepare, render, replay)
    assert not feed.loaded(served=1)  # one at a time: the next lone request is served at once
    assert feed.loaded(served=2)  # two came together: the next lone one waits for its companion
    feed._queue.put(jobs(1)[0])
    assert feed.loaded(served=1)  # one waited through the batch
