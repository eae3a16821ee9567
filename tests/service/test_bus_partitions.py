"""The bus's pure parts: where a device's fixes go, what a message looks like, deterministic ids, what
one of the worker's transactions takes from the partitions' buffers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg

from geofence.events import TransitionKind, ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence, PresenceState
from geofence.service.bus.batching import Entry, take
from geofence.service.bus.checkpoint import Move
from geofence.service.bus.partitions import (
    AT_HEADER,
    MSG_ID_HEADER,
    Renamer,
    decode,
    encode,
    partition_of,
    split_by_partition,
    stream_sequence,
    visit_id_for,
)

AT = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def fix(device: str, minute: int = 0) -> LocationFix:
    return LocationFix(device, 48.85, 2.35, 10.0, AT + timedelta(minutes=minute), client_fix_id=f"{minute}")


def test_a_device_always_maps_to_the_same_partition_whatever_the_process() -> None:
    # CRC-32 (zlib.crc32(b"dev-0") == 4041694976), not Python's salted str hash: these values hold in
    # every process and release; a change would move devices to other partitions' workers
    assert [partition_of(f"dev-{i}", 16) for i in range(5)] == [0, 6, 12, 10, 9]


@given(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=30))
def test_split_keeps_each_devices_fixes_in_request_order(devices: list[str]) -> None:
    fixes = [fix(d, minute=i) for i, d in enumerate(devices)]
    parts = split_by_partition(fixes, 3)
    assert sum(len(part) for part in parts.values()) == len(fixes)  # every fix, once
    for p, part in parts.items():
        assert all(partition_of(f.device_id, 3) == p for f in part)
        assert part == [f for f in fixes if partition_of(f.device_id, 3) == p]


@pytest.mark.parametrize("reply", [
    "$JS.ACK.FIXES.c1.1.4242.17.1733500000000000000.3",  # no domain
    "$JS.ACK.hub.ACCHASH.FIXES.c1.1.4242.17.1733500000000000000.3",  # domain, account hash
    "$JS.ACK.hub.ACCHASH.FIXES.c1.1.4242.17.1733500000000000000.3.x7Kq",  # and a random token
])
def test_the_stream_sequence_read_from_the_reply_is_nats_metadatas(reply: str) -> None:
    assert stream_sequence(reply) == Msg.Metadata._from_reply(reply).sequence.stream == 4242


def test_a_reply_that_is_no_jetstream_ack_is_refused() -> None:
    with pytest.raises(ValueError, match="not a JetStream"):
        stream_sequence("_INBOX.abc.1")


def test_a_retry_received_later_has_the_same_message_id_and_round_trips() -> None:
    fixes = [fix("a"), fix("b", 1)]
    payload, headers = encode("geofence.fixes.3", fixes, AT)
    retried, retried_headers = encode("geofence.fixes.3", fixes, AT + timedelta(seconds=5))
    assert retried == payload and retried_headers[MSG_ID_HEADER] == headers[MSG_ID_HEADER]
    assert encode("geofence.fixes.4", fixes, AT)[1][MSG_ID_HEADER] != headers[MSG_ID_HEADER]
    assert encode("geofence.fixes.3", fixes[:1], AT)[1][MSG_ID_HEADER] != headers[MSG_ID_HEADER]
    assert decode(payload, headers) == (fixes, AT)
    assert headers[AT_HEADER] == AT.isoformat()


def test_renaming_gives_a_visit_begun_in_the_batch_one_id_in_its_presence_and_its_events() -> None:
    enter = ZoneEvent("r1", "z", "d", TransitionKind.ENTER, AT, "random-visit", "inside")
    exit_ = ZoneEvent("r2", "z", "d", TransitionKind.EXIT, AT + timedelta(minutes=9), "random-visit",
                      "outside_margin")
    earlier_visit = visit_id_for("d", "y", AT - timedelta(hours=1))
    older = ZoneEvent("r3", "y", "d", TransitionKind.DWELL, AT, earlier_visit, "dwell_after_fix")
    inside = Presence("d", "z2", PresenceState.INSIDE, AT, AT, entered_at=AT, visit_id="random-2")
    renamer = Renamer()
    (presence,) = renamer.presences([inside])
    events = renamer.events([enter, exit_, older])
    assert presence.visit_id == visit_id_for("d", "z2", AT)
    assert events[0].visit_id == events[1].visit_id == visit_id_for("d", "z", AT)
    assert events[2].visit_id == older.visit_id  # begun earlier: already named
    again = Renamer().events([enter, exit_, older])
    assert [e.id for e in again] == [e.id for e in events]  # a replay names them the same
    assert len({e.id for e in events}) == 3


def test_renaming_keeps_every_other_field() -> None:
    from dataclasses import fields, replace

    event = ZoneEvent("r1", "z", "d", TransitionKind.DWELL, AT, "random-visit", "dwell_after_fix", 48.851,
                      2.352)
    (renamed,) = Renamer().events([event])
    assert renamed == replace(event, id=renamed.id, visit_id=renamed.visit_id)
    assert [f.name for f in fields(ZoneEvent)] == [  # a new field: name it in ``partitions._renamed``
        "id", "zone_id", "device_id", "kind", "at", "visit_id", "reason", "lat", "lng"]


# -- the worker's batches: every partition's buffer in one transaction -------------------------------------
def entry(seq: int, *devices: str, at_s: float = 0.0) -> Entry:
    return Entry(seq, [fix(d) for d in devices], AT + timedelta(seconds=at_s))


def test_a_batch_takes_every_partition_after_its_checkpoint_and_moves_each() -> None:
    batch = take([
        (0, 10, [entry(9, "old"), entry(11, "a", "b"), entry(14, "c")]),  # 9: committed already
        (1, 3, [entry(12, "d")]),
        (2, 7, []),
    ])
    assert batch is not None
    assert [f.device_id for f in batch.fixes] == ["a", "b", "c", "d"]
    assert batch.moves == {0: Move(10, 14, 3), 1: Move(3, 12, 1)}  # partition 2: nothing to move
    assert batch.at == AT


def test_a_partition_stops_at_a_device_met_again_and_the_next_batch_starts_there() -> None:
    buffers = [(0, 0, [entry(1, "a"), entry(2, "b"), entry(3, "a", "c"), entry(4, "d")]),
               (1, 0, [entry(5, "e")])]
    batch = take(buffers)
    assert batch is not None
    assert [f.device_id for f in batch.fixes] == ["a", "b", "e"]  # a device's requests never merged
    assert batch.moves == {0: Move(0, 2, 2), 1: Move(0, 5, 1)}
    rest = take([(0, 2, buffers[0][2])])
    assert rest is not None and rest.moves == {0: Move(2, 4, 3)}


def test_a_batch_is_bounded_in_fixes_and_in_the_span_of_receive_times() -> None:
    big = take([(0, 0, [entry(1, "a", "b"), entry(2, "c", "d")]), (1, 0, [entry(3, "e")])], max_fixes=3)
    assert big is not None and big.moves == {0: Move(0, 1, 2), 1: Move(0, 3, 1)}
    alone = take([(0, 0, [entry(1, *[f"d{i}" for i in range(5)])])], max_fixes=3)
    assert alone is not None and len(alone.fixes) == 5  # a first message always goes
    spread = take([(0, 0, [entry(1, "a", at_s=5.0), entry(2, "b", at_s=5.5)]),
                   (1, 0, [entry(3, "c", at_s=4.8), entry(4, "d", at_s=6.5)])],
                  max_at_span=timedelta(seconds=1))
    assert spread is not None and spread.moves == {0: Move(0, 2, 2), 1: Move(0, 3, 1)}
    assert spread.at == AT + timedelta(seconds=5.5)  # the latest receive time taken
    # a partition far behind (taken over, replaying) is not merged with current ones: its own batch
    behind = take([(0, 0, [entry(1, "a", at_s=60.0)]), (1, 0, [entry(2, "b", at_s=0.0)])],
                  max_at_span=timedelta(seconds=1))
    assert behind is not None and behind.moves == {0: Move(0, 1, 1)}
    assert behind.at == AT + timedelta(seconds=60)


def test_nothing_buffered_is_no_batch() -> None:
    assert take([(0, 4, []), (1, 9, [entry(9, "a")])]) is None
