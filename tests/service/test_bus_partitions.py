"""The bus's pure parts: where a device's fixes go, what a message looks like, deterministic ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from geofence.events import TransitionKind, ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence, PresenceState
from geofence.service.bus.partitions import (
    AT_HEADER,
    MSG_ID_HEADER,
    Renamer,
    decode,
    encode,
    partition_of,
    split_by_partition,
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
