"""The ingest use case against a real database (SQLite and PostgreSQL) and a real zone index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from geofence.fixes import FixLimits, LocationFix
from geofence.ingest import Ingestor
from geofence.policy import FencePolicy
from geofence.presence import PresenceState
from geofence.service.presence_cache import PresenceCache
from geofence.service.presence_store import SqlPresenceStore
from geofence.service.tables._types import as_utc
from geofence.service.tables.customers import Customer, Device
from geofence.service.tables.presence import (
    LocationFixRow,
    PresenceClockRow,
    PresenceHeadRow,
    PresenceRow,
    ZoneEventRow,
)
from geofence.service.unit_of_work import SqlUnitOfWork
from geofence.store import ConflictError
from tests.geofence.tracks import STORE, T0, fix, offset
from tests.geofence.zone_index import circle_index

AT = T0 + timedelta(minutes=30)


@pytest.fixture
def index():
    return circle_index({"store": (STORE, 50.0), "far": (offset(*STORE, 5000, 0), 80.0)})


def make(index, *, reference=False, fast_screen=True, **kw) -> Ingestor:
    return Ingestor(index, policy=FencePolicy(**kw), limits=FixLimits(), reference=reference,
                    fast_screen=fast_screen)


def run(ingestor, engine, fixes, *, at=AT, retain=False, refused=None, cache=None):
    with Session(engine, expire_on_commit=False) as s:
        return ingestor.ingest(
            fixes, uow_factory=lambda: SqlUnitOfWork(s, retain_fixes=retain, cache=cache), at=at,
            refused=refused,
        )


def statuses(outcome):
    return [(r.status, r.reason) for r in outcome.results]


def test_a_bad_fix_never_rejects_the_good_ones(engine, index):
    ing = make(index)
    good = fix(0, 0, 0)
    bad = LocationFix("dev-2", 95.0, 2.0, 10.0, T0)
    naive = LocationFix("dev-3", 48.0, 2.0, 10.0, T0.replace(tzinfo=None))
    nan = LocationFix("dev-4", float("nan"), 2.0, 10.0, T0)
    future = LocationFix("dev-5", 48.0, 2.0, 10.0, AT + timedelta(minutes=10))
    old = LocationFix("dev-6", 48.0, 2.0, 10.0, AT - timedelta(days=2))
    absurd = LocationFix("dev-7", 48.0, 2.0, 9000.0, T0)
    out = run(ing, engine, [bad, good, naive, nan, future, old, absurd])
    assert statuses(out) == [
        ("rejected", "lat_out_of_range"), ("accepted", None), ("rejected", "recorded_at_naive"),
        ("rejected", "not_finite"), ("rejected", "recorded_at_in_future"),
        ("rejected", "recorded_at_too_old"),
        ("rejected", "accuracy_absurd"),
    ]
    assert [e.kind.value for e in out.events] == ["enter"]


def test_events_and_presence_are_persisted_with_the_customer(engine, index):
    with Session(engine) as s:
        s.add(Customer(id="cust-1"))
        s.commit()
        s.add(Device(id="dev-1", customer_id="cust-1"))
        s.commit()
    out = run(make(index), engine, [fix(0, 0, 0)])
    assert len(out.events) == 1
    with Session(engine) as s:
        row = s.exec(select(ZoneEventRow)).scalars().one()
        assert (row.zone_id, row.device_id, row.customer_id) == ("store", "dev-1", "cust-1")
        assert row.kind == "enter"
        assert row.visit_id == out.events[0].visit_id
        assert row.lat == round(STORE[0], 3)
        p = s.exec(select(PresenceRow)).scalars().one()
        assert (p.state, p.version) == ("inside", 1)


def test_batches_are_sorted_per_device_and_duplicates_dropped(engine, index):
    ing = make(index)
    f1, f2, f3 = fix(0, 0, 0), fix(0, 0, 400), fix(0, 2, 200)
    dup_id = LocationFix("dev-1", f1.lat, f1.lng, 10.0, T0 + timedelta(seconds=50), client_fix_id="a")
    first = LocationFix("dev-1", f1.lat, f1.lng, 10.0, T0 + timedelta(seconds=40), client_fix_id="a")
    out = run(ing, engine, [f2, f1, f3, first, dup_id, f2])
    assert statuses(out) == [("accepted", None), ("accepted", None), ("accepted", None), ("accepted", None),
                             ("duplicate", None), ("duplicate", None)]
    assert [e.kind.value for e in out.events] == ["enter", "dwell"]
    # a retried batch: all duplicates or late; presence unchanged
    again = run(ing, engine, [f1, first])
    assert statuses(again) == [("rejected", "out_of_order"), ("duplicate", None)]
    assert again.events == []


def test_late_fix_with_a_cold_cache_never_rewinds_presence(engine, index):
    run(make(index), engine, [fix(0, 0, 0), fix(0, 0, 60)])
    cold = make(index)  # another worker: no device track in memory
    out = run(cold, engine, [fix(0, 900, 30), fix(0, 950, 45)])
    assert out.events == []
    with Session(engine) as s:
        assert SqlPresenceStore(s).load(["dev-1"])["dev-1"].presences["store"].state is PresenceState.INSIDE


def test_implausible_jump_is_ignored_and_counted(engine, index):
    ing = make(index)
    run(ing, engine, [fix(0, 0, 0), fix(0, 0, 30)])
    out = run(ing, engine, [fix(0, 50_000, 40), fix(0, 0, 60)])
    assert statuses(out) == [("rejected", "implausible_jump"), ("accepted", None)]
    assert out.events == []
    assert out.counts[("rejected", "implausible_jump")] == 1


def test_repeated_jumps_reanchor_a_device_that_really_moved(engine, index):
    ing = make(index)
    run(ing, engine, [fix(0, 0, 0)])
    far = [fix(5000, 0, 10 + i) for i in range(3)]
    out = run(ing, engine, far)
    assert [r.reason for r in out.results] == ["implausible_jump", "implausible_jump", None]


def test_refused_positions_are_rejected_with_the_adapters_reason(engine, index):
    out = run(make(index), engine, [fix(0, 0, 0), fix(0, 0, 0, device_id="dev-2")],
              refused={1: "no_location_consent"})
    assert statuses(out)[1] == ("rejected", "no_location_consent")
    assert [e.device_id for e in out.events] == ["dev-1"]


def test_raw_fixes_are_kept_only_when_retention_is_on(engine, index):
    run(make(index), engine, [fix(0, 0, 0)])
    run(make(index), engine, [fix(0, 0, 0, device_id="dev-2")], retain=True)
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(LocationFixRow)).scalar_one() == 1


def test_retention_keeps_every_accepted_fix_even_those_its_disc_spared_the_index(engine, index):
    """A fix close to where its device was last matched is not matched again (its disc): it is still
    an accepted fix, and retained like the others."""
    ing, cache = make(index), PresenceCache()
    fixes = [fix(0, 0, 10 * k) for k in range(6)] + [fix(3000, 0, 100 + 10 * k) for k in range(4)]
    for f in fixes:
        run(ing, engine, [f], retain=True, cache=cache)
    assert ing.stats.disc_fixes >= 4
    with Session(engine) as s:
        assert s.exec(select(func.count()).select_from(LocationFixRow)).scalar_one() == len(fixes)


def test_concurrent_workers_fire_one_enter_per_visit(engine, index):
    a, b = make(index), make(index)
    first = run(a, engine, [fix(0, 0, 0)])
    second = run(b, engine, [fix(0, 0, 10)])  # b never saw the first fix: reads the row, no second enter
    assert [e.kind.value for e in first.events] == ["enter"]
    assert second.events == []


def test_version_conflict_is_retried_on_fresh_rows(engine, index):
    a = make(index)
    run(a, engine, [fix(0, 0, 0)])
    calls = {"n": 0}

    def factory():
        calls["n"] += 1
        s = Session(engine, expire_on_commit=False)
        uow = SqlUnitOfWork(s)
        # first attempt: another worker's update lands between our read and our write (simulated by
        # wrapping the real store's load; the write then hits a stale version and must be retried)
        if calls["n"] == 1:
            original = uow.presence.load

            def load(ids):
                rows = original(ids)
                with Session(engine) as other:
                    row = other.exec(select(PresenceRow)).scalars().one()
                    row.version += 1
                    other.add(row)
                    other.commit()
                return rows

            uow.presence.load = load
        return uow

    out = a.ingest([fix(0, 2000, 100), fix(0, 2100, 130)], uow_factory=factory, at=AT)
    assert calls["n"] == 2
    assert [e.kind.value for e in out.events] == ["exit"]


def test_a_presence_created_concurrently_is_a_conflict_retried_on_fresh_rows(engine, index):
    """Another worker inserts the device's first presence and head between our read and our write: our
    insert hits their keys (on PostgreSQL when the pipelined writes' answers come in, at the end of the
    write scope) and the batch is retried on their rows, not failed and not a second ENTER."""
    a, b = make(index), make(index)
    calls = {"n": 0}

    def factory():
        calls["n"] += 1
        uow = SqlUnitOfWork(Session(engine, expire_on_commit=False))
        if calls["n"] == 1:
            original = uow.presence.load

            def load(ids):
                rows = original(ids)
                assert run(b, engine, [fix(0, 0, 0)]).events  # b enters first: its row and head stored
                return rows

            uow.presence.load = load
        return uow

    out = a.ingest([fix(0, 0, 5)], uow_factory=factory, at=AT)
    assert calls["n"] == 2
    assert out.events == []
    assert stored(engine)[0] is PresenceState.INSIDE


def stored(engine):
    """(state of the store presence, the device's last fix, presence row version, head version)."""
    with Session(engine) as s:
        device = SqlPresenceStore(s).load(["dev-1"])["dev-1"]
    p = device.presences.get("store")
    return (p.state if p else None), device.last_fix_at, (p.version if p else None), device.version


def test_a_device_seen_again_rewrites_its_head_once_a_heartbeat_and_its_presences_never(engine, index):
    ing = make(index)
    assert ing.heartbeat == timedelta(seconds=60)
    run(ing, engine, [fix(0, 0, 0)])
    run(ing, engine, [fix(0, 0, 30)])
    run(ing, engine, [fix(0, 0, 59)])
    assert stored(engine) == (PresenceState.INSIDE, T0, 1, 1)  # nothing but the last fix moved: coalesced
    run(ing, engine, [fix(0, 0, 60)])
    assert stored(engine) == (PresenceState.INSIDE, T0 + timedelta(seconds=60), 1, 2)
    with Session(engine) as s:
        row = s.exec(select(PresenceRow.last_fix_at)).scalars().one()
        assert as_utc(row) == T0  # the fix of the row's last change


def test_a_transition_within_the_heartbeat_is_written_at_once(engine, index):
    ing = make(index)
    run(ing, engine, [fix(0, 0, 0)])
    run(ing, engine, [fix(0, 100, 10)])  # first fix outside: exiting (a pending count) is stored
    assert stored(engine) == (PresenceState.EXITING, T0 + timedelta(seconds=10), 2, 2)
    run(ing, engine, [fix(0, 0, 20)])  # back inside
    assert stored(engine) == (PresenceState.INSIDE, T0 + timedelta(seconds=20), 3, 3)


def test_an_exit_deletes_the_presence_and_the_head_still_stops_late_fixes(engine, index):
    ing = make(index)
    run(ing, engine, [fix(0, 0, 0)])
    out = run(ing, engine, [fix(0, 200, 10), fix(0, 300, 20)])
    assert [e.kind.value for e in out.events] == ["exit"]
    assert stored(engine) == (None, T0 + timedelta(seconds=20), None, 2)
    late = run(make(index), engine, [fix(0, 0, 15)])  # a cold worker: inside, but older than the head
    assert late.events == [] and stored(engine)[0] is None


def test_purge_drops_heads_of_devices_gone_quiet_and_keeps_the_others(engine, index):
    ing = make(index)
    run(ing, engine, [fix(0, 0, 0)])  # dev-1: inside (a presence)
    run(ing, engine, [fix(0, 0, 0, device_id="dev-2")])
    run(ing, engine, [fix(0, 200, 10, device_id="dev-2"), fix(0, 300, 20, device_id="dev-2")])  # exited
    with Session(engine) as s:
        purged = SqlPresenceStore(s).purge_idle(before=T0 + timedelta(seconds=21))
        s.commit()
        heads = s.exec(select(PresenceHeadRow.device_id)).scalars().all()
    assert purged == 1 and heads == ["dev-1"]  # dev-2 has no presence and no fix since: its guard expired


def test_a_zero_heartbeat_writes_every_fix(engine, index):
    ing = Ingestor(index, policy=FencePolicy(), limits=FixLimits(), heartbeat=timedelta(0))
    run(ing, engine, [fix(0, 0, 0)])
    run(ing, engine, [fix(0, 0, 5)])
    assert stored(engine) == (PresenceState.INSIDE, T0 + timedelta(seconds=5), 1, 2)


def test_a_late_fix_within_the_heartbeat_on_another_worker_fires_nothing(engine, index):
    # documented limit of coalescing: the row still says 0 s, so a cold worker steps a late fix at 20 s;
    # one outside fix is only a pending exit, and the next fix inside cancels it
    a = make(index)
    run(a, engine, [fix(0, 0, 0)])
    run(a, engine, [fix(0, 0, 30)])
    cold = make(index)
    late = run(cold, engine, [fix(0, 2000, 20)])
    assert late.events == []
    after = run(a, engine, [fix(0, 0, 40)])
    assert after.events == []
    assert stored(engine)[0] is PresenceState.INSIDE


def test_a_process_presence_cache_never_hides_what_another_worker_wrote(engine, index):
    from geofence.service.presence_cache import PresenceCache

    caches = {"a": PresenceCache(), "b": PresenceCache()}

    def run_on(worker, ingestor, fixes):
        with Session(engine, expire_on_commit=False) as s:
            return ingestor.ingest(fixes, uow_factory=lambda: SqlUnitOfWork(s, cache=caches[worker]), at=AT)

    a, b = make(index), make(index)
    assert [e.kind.value for e in run_on("a", a, [fix(0, 0, 0)]).events] == ["enter"]
    assert run_on("a", a, [fix(0, 0, 5)]).events == []  # served from a's cache
    mine = caches["a"].devices["dev-1"]
    assert mine.presences["store"].state is PresenceState.INSIDE
    with Session(engine) as s:  # the head's version matches: the decoded copy is reused
        assert SqlPresenceStore(s, caches["a"]).load(["dev-1"])["dev-1"] is mine
    b.open_devices.add("dev-1")  # as b's sync of open devices would
    gone = run_on("b", b, [fix(0, 100, 10), fix(0, 220, 20)])  # b sees the device leave
    assert [e.kind.value for e in gone.events] == ["exit"]
    back = run_on("a", a, [fix(0, 0, 80)])  # a's cached copy is stale: the head's version says so
    assert [e.kind.value for e in back.events] == ["enter"]
    assert stored(engine)[0] is PresenceState.INSIDE


def test_the_change_feed_moves_a_copy_on_after_a_heartbeat_elsewhere_and_drops_it_after_a_change(
    engine, index
):
    """Worker a trusts its cached copy of a device until the change feed says another writer moved it:
    after b's heartbeat (only the last fix moved) a's copy keeps its decoded presences under the new
    version; after b's exit it is dropped, and a's next fix is stepped against the stored rows."""
    from geofence.service.presence_cache import PresenceCache

    caches = {"a": PresenceCache(), "b": PresenceCache()}

    def run_on(worker, ingestor, fixes):
        with Session(engine, expire_on_commit=False) as s:
            return ingestor.ingest(fixes, uow_factory=lambda: SqlUnitOfWork(s, cache=caches[worker]), at=AT)

    a = Ingestor(index, policy=FencePolicy(), limits=FixLimits())
    b = Ingestor(index, policy=FencePolicy(), limits=FixLimits(), heartbeat=timedelta(0))
    assert [e.kind.value for e in run_on("a", a, [fix(0, 0, 0)]).events] == ["enter"]
    copy = caches["a"].devices["dev-1"]
    b.open_devices.add("dev-1")
    assert run_on("b", b, [fix(0, 0, 10)]).events == []  # b: steady, and a heartbeat at every fix
    with Session(engine) as s:
        after = SqlPresenceStore(s, caches["a"]).load(["dev-1"])["dev-1"]
    assert after.version == copy.version + 1 and after.presences is copy.presences  # moved on, not re-read
    assert after.last_fix_at == fix(0, 0, 10).recorded_at
    gone = run_on("b", b, [fix(0, 100, 20), fix(0, 220, 30)])
    assert [e.kind.value for e in gone.events] == ["exit"]
    with Session(engine) as s:
        SqlPresenceStore(s, caches["a"]).follow()
    assert "dev-1" not in caches["a"].devices  # a's copy still said "inside": dropped
    back = run_on("a", a, [fix(0, 0, 80)])
    assert [e.kind.value for e in back.events] == ["enter"]


def test_a_worker_skips_its_own_tick_in_the_change_feed_but_never_another_writers(engine, index):
    """A commit whose clock tick came right after the feed position its unit of work read moves the
    position past that tick: those heads are its own, and cached as written. Had another writer ticked in
    between, the position stays, and the next batch reads that writer's heads too."""
    from geofence.service.presence_cache import PresenceCache

    caches = {"a": PresenceCache(), "b": PresenceCache()}

    def run_on(worker, ingestor, fixes):
        with Session(engine, expire_on_commit=False) as s:
            return ingestor.ingest(fixes, uow_factory=lambda: SqlUnitOfWork(s, cache=caches[worker]), at=AT)

    def clock():
        with Session(engine) as s:
            return s.exec(select(PresenceClockRow.seq)).scalars().one()

    a, b = make(index), make(index)
    both = [fix(0, 0, 0), fix(0, 0, 0, device_id="dev-2")]
    assert [e.kind.value for e in run_on("a", a, both).events] == ["enter", "enter"]
    assert caches["a"].seq == clock()  # its own tick, skipped
    with Session(engine, expire_on_commit=False) as s:
        uow = SqlUnitOfWork(s, cache=caches["a"])
        uow.presence.follow()  # a reads the feed...
        b.open_devices.add("dev-1")
        gone = run_on("b", b, [fix(0, 100, 10), fix(0, 220, 20)])  # ...b moves dev-1 out...
        assert [e.kind.value for e in gone.events] == ["exit"]
        uow.presence.load(["dev-2"])
        uow.presence.save([], seen={"dev-2": fix(0, 0, 30).recorded_at})  # ...and a writes, a tick later
        uow.commit()
    assert caches["a"].seq == clock() - 2  # b's tick is in between: not skipped
    back = run_on("a", a, [fix(0, 0, 80)])  # so a reads b's head, drops its copy, and steps the fix
    assert [e.kind.value for e in back.events] == ["enter"]


def test_a_heartbeat_is_written_only_at_the_version_its_copy_had(engine, index):
    run(make(index), engine, [fix(0, 0, 0)])
    with Session(engine, expire_on_commit=False) as s:
        version = SqlPresenceStore(s).load(["dev-1"])["dev-1"].version
        uow = SqlUnitOfWork(s)
        with pytest.raises(ConflictError):
            uow.presence.beat([("dev-1", version - 1, fix(0, 0, 90).recorded_at)])
        uow.rollback()
        uow = SqlUnitOfWork(s)
        uow.presence.beat([("dev-1", version, fix(0, 0, 90).recorded_at)])
        uow.commit()
    assert stored(engine) == (PresenceState.INSIDE, fix(0, 0, 90).recorded_at, 1, version + 1)


def test_an_ingestor_moving_between_presence_caches_trusts_only_the_copies_of_the_one_it_reads(
    engine, index
):
    """The tracks mirror the versions of the cache a batch reads: a batch on another cache starts from
    that cache's copies, and a change seen by one cache never vouches for a copy in another."""
    from geofence.service.presence_cache import PresenceCache

    one, two, elsewhere = PresenceCache(), PresenceCache(), PresenceCache()

    def run_on(cache, ingestor, fixes):
        with Session(engine, expire_on_commit=False) as s:
            return ingestor.ingest(fixes, uow_factory=lambda: SqlUnitOfWork(s, cache=cache), at=AT)

    ing, other = make(index), make(index)
    assert [e.kind.value for e in run_on(one, ing, [fix(0, 0, 0)]).events] == ["enter"]
    assert run_on(one, ing, [fix(0, 0, 5)]).events == []
    assert run_on(one, ing, [fix(0, 0, 10)]).events == []  # settled in columns against cache one
    columns = ing.stats.column_skips
    assert columns >= 1
    assert run_on(two, ing, [fix(0, 0, 15)]).events == []  # cache two has no copy: read, not settled
    assert ing.stats.column_skips == columns
    other.open_devices.add("dev-1")
    gone = run_on(elsewhere, other, [fix(0, 100, 20), fix(0, 220, 30)])  # another worker: dev-1 leaves
    assert [e.kind.value for e in gone.events] == ["exit"]
    back = run_on(one, ing, [fix(0, 0, 80)])  # cache one hears of it from the feed: the fix is stepped
    assert [e.kind.value for e in back.events] == ["enter"]


def test_a_sweep_chunk_after_a_rolled_back_one_still_checks_the_heads_it_read(engine, index):
    """The sweep writes chunk by chunk in one unit of work. A chunk that conflicts is rolled back; the
    next one must still be checked against the head versions the sweep read, so a device that sent a
    fix since (a heartbeat: only its head moved) is not exited for silence."""
    ing = make(index)
    run(ing, engine, [fix(0, 0, 0, device_id="dev-1"), fix(0, 0, 0, device_id="dev-2")])
    later = AT + timedelta(hours=2)
    with Session(engine, expire_on_commit=False) as s:
        sweep_uow = SqlUnitOfWork(s)
        due = sweep_uow.presence.due_for_sweep(later, silent_since=later - timedelta(minutes=30), limit=10)
        s.rollback()
        assert sorted(p.device_id for p in due) == ["dev-1", "dev-2"]
        changed, _ = ing.sweep_presences(due, later)
        # meanwhile another worker: dev-1 steps outside (its row changes), dev-2 is seen (its head only)
        other = Ingestor(index, policy=FencePolicy(), limits=FixLimits(), heartbeat=timedelta(0))
        other.open_devices.update({"dev-1", "dev-2"})
        run(other, engine, [fix(0, 100, 60, device_id="dev-1"), fix(0, 0, 60, device_id="dev-2")])
        for device_id in ("dev-1", "dev-2"):  # one chunk each, as the sweep does
            with pytest.raises(ConflictError):
                sweep_uow.presence.save([p for p in changed if p.device_id == device_id])
            sweep_uow.rollback()
    with Session(engine) as s:
        states = {d: {z: p.state for z, p in v.presences.items()}
                  for d, v in SqlPresenceStore(s).load(["dev-1", "dev-2"]).items()}
    assert states["dev-2"] == {"store": PresenceState.INSIDE}  # not exited by the sweep


def test_a_cached_presence_is_dropped_with_its_row(engine, index):
    """An erasure deletes rows behind every worker's back and says so on the presence clock."""
    from geofence.service.presence_cache import PresenceCache, drop_presence_caches

    cache = PresenceCache()
    ing = make(index)
    with Session(engine, expire_on_commit=False) as s:
        ing.ingest([fix(0, 0, 0)], uow_factory=lambda: SqlUnitOfWork(s, cache=cache), at=AT)
    with Session(engine) as s:  # an erasure deletes the device's rows behind the process's back
        s.exec(PresenceRow.__table__.delete())
        s.exec(PresenceHeadRow.__table__.delete())
        drop_presence_caches(s)
        s.commit()
    with Session(engine, expire_on_commit=False) as s:
        out = ing.ingest([fix(0, 0, 30)], uow_factory=lambda: SqlUnitOfWork(s, cache=cache), at=AT)
    assert [e.kind.value for e in out.events] == ["enter"]


def test_steady_visits_skip_the_machine_with_the_same_rows_and_events_as_stepping(engine, index, tmp_path):
    """The fast paths (a steady device is not stepped; a steady visit of a device that is, neither)
    change no decision: the same random walk in and out of the store, in batches, gives the same events
    and stored rows with them off."""
    import random

    from geofence.service.db import create_schema, make_engine

    rng = random.Random(8)
    track, t = [], 0
    for _ in range(8):  # visits: a stay in the store with jitter, then a walk away of a few fixes
        for _ in range(rng.randint(5, 60)):
            t += rng.choice([2, 3, 5, 8, 20, 61])
            r, acc = rng.choice([0, 5, 10, 20, 30, 45]), rng.choice([5, 15, 40])
            track.append(fix(r * rng.uniform(-1, 1), r * rng.uniform(-1, 1), t, accuracy_m=acc))
        for _ in range(rng.randint(1, 5)):
            t += rng.choice([5, 30])
            track.append(fix(rng.choice([60, 150, 400]), 0, t, accuracy_m=rng.choice([5, 15])))
    batches, i = [], 0  # mostly one fix a batch (the fast lane's case, where the columns decide)
    while i < len(track):
        size = rng.choice([1, 1, 1, 3, 9])
        batches.append(track[i : i + size])
        i += size

    def replay(eng, skip):
        ing = make(index, dwell_after=timedelta(seconds=90), reference=not skip)
        cache = PresenceCache()  # as the service has: the steady summaries are then tested in columns
        events = []
        for b in batches:
            out = run(ing, eng, b, at=T0 + timedelta(seconds=t + 10), cache=cache)
            events.append([(e.zone_id, e.kind.value, e.at, e.reason) for e in out.events])  # per batch
        with Session(eng) as s:
            device = SqlPresenceStore(s).load(["dev-1"])["dev-1"]
        rows = sorted(
            (p.zone_id, p.state, p.last_fix_at, p.version, p.dwelled) for p in device.presences.values()
        )
        skips = (ing.stats.steady_skips, ing.stats.column_skips, ing.stats.disc_fixes)
        return (events, rows, device.version, device.last_fix_at), skips

    fast, (skips, column_skips, disc_fixes) = replay(engine, True)
    assert skips >= 10  # the fast path did run
    assert column_skips >= 5  # and its columns too (a device's one fix in a batch, its summary known)
    assert disc_fixes >= 5  # and its discs (the zones of a fix close to the last one matched)
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert replay(reference_engine, False) == (fast, (0, 0, 0))
    kinds = [k for batch in fast[0] for _, k, _, _ in batch]
    assert kinds.count("enter") >= 3 and "dwell" in kinds and "exit" in kinds


def _one_fix_a_batch(index, eng, fixes, dwell_after, *, skip):
    """Replay ``fixes`` one a batch with a presence cache: the events of each batch and the device's head
    (version, last fix) as stored, and how many fixes were settled in columns."""
    ing = make(index, dwell_after=dwell_after, reference=not skip)
    cache = PresenceCache()
    per_batch = []
    for f in fixes:
        out = run(ing, eng, [f], at=T0 + timedelta(seconds=400), cache=cache)
        per_batch.append([(e.kind.value, e.at) for e in out.events])
    with Session(eng) as s:
        head = s.get(PresenceHeadRow, "dev-1")
        stored = (head.version, as_utc(head.last_fix_at))
    return (per_batch, stored), ing.stats.column_skips


def test_a_device_settled_in_columns_dwells_at_the_first_fix_past_its_dwell_time(engine, index, tmp_path):
    """A device standing in the store, one fix a batch, is settled by its track's summary (columns) until
    its dwell is due: the fix that reaches it steps the device, in the same batch as without the skips."""
    from geofence.service.db import create_schema, make_engine

    fixes = [fix(0, 0, 10 * k, accuracy_m=5) for k in range(30)]  # enter at 0 s, dwell due at 90 s
    dwell_after = timedelta(seconds=90)
    fast, column_skips = _one_fix_a_batch(index, engine, fixes, dwell_after, skip=True)
    assert column_skips >= 15
    per_batch = fast[0]
    assert [k for k, batch in enumerate(per_batch) if batch] == [0, 9]  # ENTER, then DWELL at 90 s
    assert per_batch[9] == [("dwell", T0 + timedelta(seconds=90))]
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert _one_fix_a_batch(index, reference_engine, fixes, dwell_after, skip=False) == (fast, 0)


def test_a_device_settled_in_columns_stays_there_through_its_own_heartbeats(engine, index, tmp_path):
    """A heartbeat written here moves the head on by one version and changes no presence row, so the
    track's summary is carried to the new version: the fix after a heartbeat is settled in columns too
    (it used to go back through the loop), with the events, rows and head of the path without skips."""
    from geofence.service.db import create_schema, make_engine

    fixes = [fix(0, 0, 10 * k, accuracy_m=5) for k in range(31)]  # heartbeats at 60, 120, ... 300 s
    fast, column_skips = _one_fix_a_batch(index, engine, fixes, timedelta(hours=1), skip=True)
    assert fast[1] == (1 + 5, T0 + timedelta(seconds=300))  # the enter, then five heartbeats
    assert column_skips == len(fixes) - 2  # every fix after the one that made the summary
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert _one_fix_a_batch(index, reference_engine, fixes, timedelta(hours=1), skip=False) == (fast, 0)


def test_the_fast_lane_gives_the_results_events_rows_and_tracks_of_the_generic_path(
    engine, index, tmp_path
):
    """The vectorised screen is a second implementation of the common case of ``screening.screen``: a random
    stream mixing plain fixes with retries, late and far-jumping fixes, bad values, naive times, reported
    speeds, refused positions and devices twice in a batch gives the same everything without it."""
    import random

    from geofence.service.db import create_schema, make_engine

    rng = random.Random(5)
    devices = [f"dev-{k}" for k in range(6)]
    clock = dict.fromkeys(devices, 0.0)
    batches: list[tuple[list[LocationFix], dict[int, str]]] = []
    for _ in range(60):
        batch: list[LocationFix] = []
        for d in rng.sample(devices, rng.randint(1, 6)):
            clock[d] += rng.choice([1, 5, 20])
            r = rng.choice([0, 20, 40, 80, 300])
            f = fix(r * rng.uniform(-1, 1), r * rng.uniform(-1, 1), clock[d], device_id=d,
                    accuracy_m=rng.choice([5, 15, 40]), speed_mps=rng.choice([None, None, None, 1.0]))
            kind = rng.random()
            if kind < 0.08 and batches:  # a retry of an earlier fix of the batch before
                f = rng.choice(batches[-1][0])
            elif kind < 0.14:  # late
                f = fix(0, 0, clock[d] - 30, device_id=d)
            elif kind < 0.2:  # far away a second later: an implausible jump
                f = fix(0, 50_000, clock[d], device_id=d)
            elif kind < 0.23:
                f = LocationFix(d, float("nan"), f.lng, f.accuracy_m, f.recorded_at)
            elif kind < 0.26:
                f = LocationFix(d, f.lat, f.lng, f.accuracy_m, f.recorded_at.replace(tzinfo=None))
            batch.append(f)
            if rng.random() < 0.1:  # the same device twice in one batch
                clock[d] += 2
                batch.append(fix(0, 0, clock[d], device_id=d))
        refused = {i: "device_not_allowed" for i in range(len(batch)) if rng.random() < 0.05}
        batches.append((batch, refused))

    def replay(eng, lane):
        ing = make(index, fast_screen=lane)
        out = []
        for b, refused in batches:
            o = run(ing, eng, b, at=T0 + timedelta(seconds=max(clock.values()) + 10), refused=refused)
            events = [(e.device_id, e.zone_id, e.kind.value, e.at, e.reason) for e in o.events]
            out.append((statuses(o), events, sorted(o.counts.items())))
        with Session(eng) as s:
            stored = SqlPresenceStore(s).load(devices)
        rows = {}
        for d, v in stored.items():
            presences = sorted((z, p.state, p.pending_fixes) for z, p in v.presences.items())
            rows[d] = (v.version, v.last_fix_at, presences)
        tracks = {d: ing.tracks.get(d) for d in ing.tracks}
        return out, rows, tracks

    fast = replay(engine, True)
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert replay(reference_engine, False) == fast
    every = [r for batch_out, _, _ in fast[0] for r in batch_out]
    for outcome in (("duplicate", None), ("rejected", "out_of_order"), ("rejected", "implausible_jump"),
                    ("rejected", "not_finite"), ("rejected", "recorded_at_naive"), ("accepted", None)):
        assert outcome in every  # every kind of fix was exercised
    assert any(k == "enter" for _, events, _ in fast[0] for _, _, k, _, _ in events)


def test_zone_hits_too_shallow_to_enter_skip_the_machine_with_the_same_rows_and_events(engine, tmp_path):
    """A device steady in its zones whose fix also grazes another zone (inside, but not deep enough for
    its accuracy) is not stepped either: a random stay near such a zone's edge, then one lingering just
    inside it (where the device's disc bounds how deep its fixes can be, and the columns settle them),
    give the same events and rows with the skips off."""
    import random

    from geofence.service.db import create_schema, make_engine

    index = circle_index({
        "store": (STORE, 50.0), "mall": (STORE, 400.0), "edge": (offset(*STORE, 0, 75), 60.0),
        "kiosk": (offset(*STORE, 200, 0), 30.0),
    })
    rng = random.Random(11)
    track, t = [], 0
    for _ in range(300):
        t += rng.choice([3, 5, 8])
        north, east = rng.uniform(-25, 25), rng.uniform(-25, 25)
        track.append(fix(north, east, t, accuracy_m=rng.choice([5, 15, 40, 40])))
    for _ in range(200):  # out of "store" and "edge", to linger ~2 m inside "kiosk" (its edge: 170 m north)
        t += rng.choice([3, 5, 8])
        north, east = 172 + rng.uniform(-0.7, 0.7), rng.uniform(-0.7, 0.7)
        track.append(fix(north, east, t, accuracy_m=rng.choice([15, 25, 40, 40])))

    def replay(eng, skip, cache):
        ing = make(index, dwell_after=timedelta(hours=1), reference=not skip)
        events = []
        for f in track:
            out = run(ing, eng, [f], at=T0 + timedelta(seconds=t + 10), cache=cache)
            events += sorted((e.zone_id, e.kind.value, e.at, e.reason) for e in out.events)  # a fix's own
            # events come in no set order across zones (their order follows a set's, by hash)
        with Session(eng) as s:
            device = SqlPresenceStore(s).load(["dev-1"])["dev-1"]
        rows = sorted((p.zone_id, p.state, p.last_fix_at, p.version) for p in device.presences.values())
        shallow = (ing.stats.shallow_skips, ing.stats.shallow_column_skips + ing.stats.presence_skips)
        return (events, rows, device.version, device.last_fix_at), shallow

    def engine_at(name):
        other = make_engine(f"sqlite:///{tmp_path}/{name}.db")
        create_schema(other)
        return other

    fast, (shallow, in_columns) = replay(engine, True, None)
    assert shallow >= 10 and in_columns == 0  # the shortcut did run (with no cache, never in columns)
    cached, (shallow, in_columns) = replay(engine_at("cached"), True, PresenceCache())
    assert shallow >= 10 and in_columns >= 5  # with one, in columns too: by a disc's accuracy bound
    assert replay(engine_at("reference"), False, None) == (fast, (0, 0))
    assert cached == fast
    assert {z for z, k, _, _ in fast[0] if k == "enter"} >= {"store", "mall", "edge"}


def test_a_fix_with_a_non_utc_offset_is_stored_at_its_instant(engine, index):
    """SQLite has no time zone type: a fix at 12:00+02:00 must be stored as 10:00 UTC, not 12:00."""
    from datetime import timezone

    paris = timezone(timedelta(hours=2))
    local = fix(0, 0, 0)
    local = LocationFix(local.device_id, local.lat, local.lng, local.accuracy_m, T0.astimezone(paris))
    ing = make(index)
    assert [e.kind.value for e in run(ing, engine, [local]).events] == ["enter"]
    with Session(engine) as s:
        assert as_utc(s.exec(select(ZoneEventRow.at)).scalars().one()) == T0
        device = SqlPresenceStore(s).load(["dev-1"])["dev-1"]
    assert device.last_fix_at == T0 and device.presences["store"].entered_at == T0
    # a cold worker's fix in UTC 30 s later is newer, not two hours late
    cold = make(index)
    cold.open_devices.add("dev-1")  # as its sync of open devices would
    out = run(cold, engine, [fix(0, 200, 30), fix(0, 300, 45)])
    assert [e.kind.value for e in out.events] == ["exit"]


def test_discs_give_the_events_rows_and_heads_of_matching_every_fix(engine, tmp_path):
    """A fast-lane fix closer to the point its device was last matched at than that point's clearance
    takes the point's zones from the device's disc, not from the index: random walks of several devices
    among overlapping circles and a polygon, one fix per device a batch, with zones added, replaced and
    removed on the way, give the same events (batch by batch), rows and heads as matching every fix."""
    import random

    from geofence.service.db import create_schema, make_engine
    from zones.model import Area

    def square(north: float, east: float, half_m: float) -> list[list[float]]:
        corners = [offset(*STORE, north + dn, east + de) for dn, de in
                   ((-half_m, -half_m), (-half_m, half_m), (half_m, half_m), (half_m, -half_m))]
        return [[lng, lat] for lat, lng in corners + corners[:1]]

    def zones():
        from tests.geofence.zone_index import Zone, circle_zone

        area = Area({"type": "Polygon", "coordinates": [square(-30, 40, 45)]})
        return [circle_zone("store", STORE, 50.0), circle_zone("mall", STORE, 400.0),
                circle_zone("edge", offset(*STORE, 0, 75), 60.0),
                Zone(id="block", name="block", geometry=area)]

    rng = random.Random(21)
    devices = [f"dev-{k}" for k in range(5)]
    where = {d: [rng.uniform(-120, 120), rng.uniform(-120, 120)] for d in devices}
    batches, t = [], 0
    for _ in range(160):
        t += rng.choice([3, 5, 10])
        batch = []
        for d in rng.sample(devices, rng.randint(2, 5)):
            step = rng.choice([2, 3, 5, 20])
            where[d][0] += rng.uniform(-step, step)
            where[d][1] += rng.uniform(-step, step)
            batch.append(fix(*where[d], t, device_id=d, accuracy_m=rng.choice([5, 10, 15, 40])))
        batches.append(batch)

    def replay(eng, discs):
        from tests.geofence.zone_index import ZoneIndex, circle_zone

        index = ZoneIndex(zones())
        ing = make(index, dwell_after=timedelta(seconds=90), reference=not discs)
        cache = PresenceCache()
        events = []
        for k, b in enumerate(batches):
            if k == 50:  # a zone added around a device (no adoption here: it enters at its next fix)
                index.add(circle_zone("pop", (b[0].lat, b[0].lng), 30.0))
            elif k == 90:
                index.replace(circle_zone("edge", offset(*STORE, 0, 60), 45.0))
            elif k == 120:
                index.remove("store")
            out = run(ing, eng, b, at=T0 + timedelta(seconds=t + 10), cache=cache)
            events.append(sorted((e.device_id, e.zone_id, e.kind.value, e.at, e.reason) for e in out.events))
        with Session(eng) as s:
            stored = SqlPresenceStore(s).load(devices)
        rows = {d: (v.version, v.last_fix_at, sorted((z, p.state, p.pending_fixes, p.last_fix_at)
                                                     for z, p in v.presences.items()))
                for d, v in stored.items()}
        return (events, rows), (ing.stats.disc_fixes, ing.stats.presence_skips)

    fast, (disc_fixes, presence_skips) = replay(engine, True)
    total = sum(len(b) for b in batches)
    assert disc_fixes >= total // 3  # the discs did serve (most fixes move a few metres)
    assert presence_skips >= 10  # and the presence discs, where a fix left its zones' disc
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert replay(reference_engine, False) == (fast, (0, 0))
    kinds = {(z, k) for batch in fast[0] for _, z, k, _, _ in batch}
    assert {("pop", "enter"), ("store", "exit"), ("block", "exit"), ("edge", "enter")} <= kinds


def test_presence_discs_give_the_events_of_matching_every_fix_across_zone_edges(engine, tmp_path):
    """A device walking slowly out of the store, through the edge of others, and back, one fix a batch:
    settled by its presence disc while its steady zones still hold it and every other zone is too
    shallow for its fix, it gives the events, rows and head of matching and stepping every fix."""
    import random

    from geofence.service.db import create_schema, make_engine

    index = circle_index({
        "store": (STORE, 50.0), "mall": (STORE, 400.0), "edge": (offset(*STORE, 0, 75), 60.0),
        "far": (offset(*STORE, 0, 140), 30.0),
    })
    rng = random.Random(4)
    track, t, east = [], 0, 0.0
    for step in [1.5] * 120 + [-1.5] * 120:
        t += 5
        east += step
        track.append(fix(rng.uniform(-1, 1), east, t, accuracy_m=rng.choice([5, 10, 20, 40])))

    def replay(eng, discs):
        ing = make(index, dwell_after=timedelta(hours=1), reference=not discs)
        cache = PresenceCache()
        events = []
        for f in track:
            out = run(ing, eng, [f], at=T0 + timedelta(seconds=t + 10), cache=cache)
            events.append(sorted((e.zone_id, e.kind.value, e.at, e.reason) for e in out.events))
        with Session(eng) as s:
            device = SqlPresenceStore(s).load(["dev-1"])["dev-1"]
        rows = sorted((p.zone_id, p.state, p.last_fix_at, p.version) for p in device.presences.values())
        return (events, rows, device.version, device.last_fix_at), ing.stats.presence_skips

    fast, presence_skips = replay(engine, True)
    assert presence_skips >= 30
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert replay(reference_engine, False) == (fast, 0)
    kinds = {(z, k) for batch in fast[0] for z, k, _, _ in batch}
    assert {("store", "exit"), ("store", "enter"), ("edge", "enter"), ("edge", "exit")} <= kinds


def test_a_retried_batch_never_accepts_a_fix_it_called_a_duplicate(engine, index):
    """Two fixes sharing a client fix id: the second is a duplicate, the first time and every time after."""
    ing = make(index)
    first = LocationFix("dev-1", *STORE, 10.0, T0, client_fix_id="x")
    repeat = LocationFix("dev-1", *STORE, 10.0, T0 + timedelta(seconds=30), client_fix_id="x")
    assert statuses(run(ing, engine, [first, repeat])) == [("accepted", None), ("duplicate", None)]
    retried = [statuses(run(ing, engine, [first, repeat])) for _ in range(3)]
    assert retried == [[("duplicate", None), ("duplicate", None)]] * 3
    with Session(engine) as s:
        head = s.get(PresenceHeadRow, "dev-1")
        assert as_utc(head.last_fix_at) == T0  # the repeat was never taken as a newer fix


def test_spikes_late_batches_and_sweeps_give_the_events_of_stepping_every_fix(engine, tmp_path):
    """The rules of late fixes after the sweep's transitions, timer-dwell evidence and spike holds are
    the same in the accelerated lanes (fast lane, steady skips in columns, discs) as stepping every fix:
    several devices walking among zones (some holding spikes), with lone spikes, fast moves, silences,
    late batches arriving after the sweep has run, and the sweep every minute."""
    import random

    from geofence.policy import policy_for_zone
    from geofence.service.db import create_schema, make_engine
    from tests.geofence.zone_index import FenceSettings, ZoneIndex, circle_zone

    hold = FenceSettings(spike_hold_m=300.0)
    zones = [circle_zone("store", STORE, 50.0, fence=hold), circle_zone("mall", STORE, 400.0),
             circle_zone("drive", offset(*STORE, 0, 900), 300.0, fence=hold),
             circle_zone("kiosk", offset(*STORE, 150, 0), 40.0)]
    rng = random.Random(27)
    devices = [f"dev-{k}" for k in range(4)]
    where = {d: [rng.uniform(-200, 200), rng.uniform(-200, 200)] for d in devices}
    arrivals: dict[int, list] = {}  # second of arrival -> fixes
    for d in devices:
        t, held_back = 0, []
        while t < 5400:
            t += rng.choice([5, 10, 30])
            if rng.random() < 0.01:
                t += rng.choice([600, 2400])  # a silence: timers fire in it
            where[d][0] += rng.uniform(-8, 8)
            where[d][1] += rng.uniform(-8, 8)
            north, east = where[d]
            if rng.random() < 0.04:  # a lone spike, 600-1,200 m away (into the drive zone, often)
                east += rng.uniform(600, 1200)
            f = fix(north, east, t, device_id=d, accuracy_m=rng.choice([5, 10, 20]))
            if held_back or rng.random() < 0.02:  # the phone buffers a few minutes, then sends them late
                held_back.append(f)
                if len(held_back) < rng.randint(3, 40):
                    continue
                arrivals.setdefault(t + rng.choice([0, 60, 1900]), []).extend(held_back)
                held_back = []
                continue
            arrivals.setdefault(t, []).append(f)
    # a car, a fix per 30 s: 5 minutes at the drive zone, away at 15 m/s, 5 minutes there, back
    leg = [900.0] * 10 + [900.0 + 450 * k for k in range(1, 6)] + [3150.0] * 10
    leg += [3150.0 - 450 * k for k in range(1, 6)]
    for k, east in enumerate(leg * 3):
        arrivals.setdefault(30 * k + 1, []).append(fix(0, east, 30 * k + 1, device_id="car"))
    devices.append("car")
    last = max(arrivals)

    def shown(events):
        return [(e.device_id, e.zone_id, e.kind.value, e.at, e.reason) for e in events]

    def replay(eng, lanes):
        index = ZoneIndex(zones)
        base = FencePolicy(dwell_after=timedelta(seconds=120))
        ing = Ingestor(index, policy=base, limits=FixLimits(max_age=timedelta(days=2)),
                       zone_policy=lambda z: policy_for_zone(base, index.get(z).fence), reference=not lanes)
        cache = PresenceCache()
        events = []
        for second in range(0, last + 3600):
            if second in arrivals:
                out = run(ing, eng, arrivals[second], at=T0 + timedelta(seconds=second), cache=cache)
                events.append(sorted(shown(out.events)))
            if second % 60 == 0:  # the sweep, as GeofenceService.sweep does it
                at = T0 + timedelta(seconds=second)
                with Session(eng, expire_on_commit=False) as s:
                    uow = SqlUnitOfWork(s, cache=cache)
                    silent_since = at - base.silence_exit_after
                    due = uow.presence.due_for_sweep(at, silent_since=silent_since, limit=10**5)
                    s.rollback()
                    changed, fired = ing.sweep_presences(due, at)
                    if changed:
                        uow.presence.save(changed)
                        uow.events.add(fired, recorded_at=at)
                        uow.commit()
                    events.append(sorted(shown(fired)))
        with Session(eng) as s:
            stored = SqlPresenceStore(s).load(devices)
        rows = {d: (v.last_fix_at, sorted((z, p.state, p.pending_fixes) for z, p in v.presences.items()))
                for d, v in stored.items()}
        return (events, rows), ing.stats.steady_skips + ing.stats.disc_fixes

    fast, skips = replay(engine, True)
    assert skips > 100  # the lanes did serve
    reference_engine = make_engine(f"sqlite:///{tmp_path}/reference.db")
    create_schema(reference_engine)
    assert replay(reference_engine, False) == (fast, 0)
    flat = [e for batch in fast[0] for e in batch]
    reasons = {r for *_, r in flat}
    assert {"held", "inferred_silence", "dwell_timer"} <= reasons
    by_pair: dict[tuple[str, str], list] = {}
    for d, z, k, at, _ in flat:
        by_pair.setdefault((d, z), []).append((at, k))
    for pair, seq in by_pair.items():  # emission order: never an event stamped before an earlier one
        assert [at for at, _ in seq] == sorted(at for at, _ in seq), pair


def test_an_earlier_request_stepped_after_a_later_steady_one_elsewhere_gives_the_events_of_one_process(
    engine, index
):
    """Two workers sharing the database: a device stands in the store; worker b settles its fix at 40 s
    (steady: nothing written before the heartbeat), then worker a gets the device's *earlier* request
    (outside at 20 s and 30 s) and exits it at 30 s. One process taking the requests in their sending
    order gives EXIT at 30 s, then ENTER at 40 s: b's next batch, reading a's write in the change feed,
    steps its 40 s fix against a's rows (docs/presence.md)."""
    caches = {"a": PresenceCache(), "b": PresenceCache()}

    def run_on(worker, ingestor, fixes):
        with Session(engine, expire_on_commit=False) as s:
            return ingestor.ingest(fixes, uow_factory=lambda: SqlUnitOfWork(s, cache=caches[worker]), at=AT)

    def shown(outcome):
        return [(e.kind.value, e.at) for e in outcome.events]

    a, b = make(index), make(index)
    assert [e.kind.value for e in run_on("a", a, [fix(0, 0, 0)]).events] == ["enter"]
    assert run_on("b", b, [fix(0, 0, 40)]).events == []  # steady at b: nothing written
    assert shown(run_on("a", a, [fix(100, 0, 20), fix(150, 0, 30)])) == [("exit", T0 + timedelta(seconds=30))]
    later = run_on("b", b, [fix(0, 3000, 50, device_id="dev-2")])  # any batch of b's
    assert shown(later) == [("enter", T0 + timedelta(seconds=40))]
    assert stored(engine)[:2] == (PresenceState.INSIDE, T0 + timedelta(seconds=40))
