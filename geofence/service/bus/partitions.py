"""Where a fix goes on the bus and what the message looks like (pure: no I/O).

A device's fixes always land in one partition (``partition_of``: a stable hash, the same in every
process and release, unlike Python's ``hash``), so one worker sees all of them, in the order the API
processes published them. A message is one request's fixes of one partition: the payload is the fixes
(msgpack), the ``Geofence-At`` header the API's receive time (the ingest's age and clock-skew checks use
it, so a replay decides exactly as the first pass did), and ``Nats-Msg-Id`` a digest of subject and
payload, so a retried request (same fixes) is dropped by JetStream's de-duplication window.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from geofence.events import TransitionKind, ZoneEvent
from geofence.fixes import LocationFix
from geofence.presence import Presence

AT_HEADER = "Geofence-At"
MSG_ID_HEADER = "Nats-Msg-Id"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[LocationFix])


def partition_of(device_id: str, partitions: int) -> int:
    """The device's partition: CRC-32 of its id modulo ``partitions`` (stable across processes)."""
    return zlib.crc32(device_id.encode()) % partitions


def subject_of(prefix: str, partition: int) -> str:
    return f"{prefix}.{partition}"


def split_by_partition(fixes: Sequence[LocationFix], partitions: int) -> dict[int, list[LocationFix]]:
    """The fixes of each partition, each list in request order."""
    out: dict[int, list[LocationFix]] = {}
    for fix in fixes:
        out.setdefault(partition_of(fix.device_id, partitions), []).append(fix)
    return out


def encode(subject: str, fixes: Sequence[LocationFix], at: datetime) -> tuple[bytes, dict[str, str]]:
    """Payload and headers of one message. The id leaves ``at`` out: a retry comes at another time."""
    payload = _encoder.encode(fixes)
    msg_id = hashlib.blake2b(subject.encode() + b"\0" + payload, digest_size=16).hexdigest()
    return payload, {MSG_ID_HEADER: msg_id, AT_HEADER: at.isoformat()}


def stream_sequence(reply: str) -> int:
    """A JetStream message's stream sequence, from its reply subject: ``$JS.ACK.<stream>.<consumer>.
    <delivered>.<stream seq>.…`` (9 tokens), or with ``<domain>.<account hash>`` after ``ACK`` (11 or
    12). nats-py's ``Msg.metadata`` parses every token into a dataclass (and a datetime) per message."""
    tokens = reply.split(".")
    if len(tokens) < 9 or tokens[0] != "$JS" or tokens[1] != "ACK":
        raise ValueError(f"not a JetStream message reply: {reply!r}")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


def decode(payload: bytes, headers: Mapping[str, str] | None) -> tuple[list[LocationFix], datetime]:
    if not headers or AT_HEADER not in headers:
        raise ValueError(f"fix message without a {AT_HEADER} header")
    return _decoder.decode(payload), datetime.fromisoformat(headers[AT_HEADER])


# -- deterministic ids: a replay of the same fixes names its visits and events the same -----------------
def _digest(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


def visit_id_for(device_id: str, zone_id: str, entered_at: datetime) -> str:
    """A visit is named by who entered where and when (the ENTER's fix time)."""
    return _digest("visit", device_id, zone_id, entered_at.isoformat())


def event_id_for(event: ZoneEvent, visit_id: str | None = None) -> str:
    """An event is named by its visit (``visit_id``: its renamed one), kind and time: the same transition
    gets the same id on replay."""
    return _digest("event", event.device_id, event.zone_id, event.kind.value, event.at.isoformat(),
                   event.visit_id if visit_id is None else visit_id, event.reason)


class Renamer:
    """Replaces the core's random visit and event ids (``presence.new_id``) by the deterministic ones
    above, in the presences and events of one transaction. A visit begun in it is met either as an open
    presence (its ``entered_at``) or as its ENTER event (its ``at``, the same instant); a visit begun
    earlier already carries its deterministic id (it was renamed when it began)."""

    def __init__(self) -> None:
        self.visits: dict[str, str] = {}

    def presences(self, changed: Sequence[Presence]) -> list[Presence]:
        out = []
        for p in changed:
            if p.visit_id is not None and p.entered_at is not None:
                new = self.visits.setdefault(p.visit_id, visit_id_for(p.device_id, p.zone_id, p.entered_at))
                if new != p.visit_id:
                    p = msgspec.structs.replace(p, visit_id=new)
            out.append(p)
        return out

    def events(self, events: Sequence[ZoneEvent]) -> list[ZoneEvent]:
        for e in events:  # ENTERs first: they name the visits their DWELL / EXIT refer to
            if e.kind is TransitionKind.ENTER:
                self.visits.setdefault(e.visit_id, visit_id_for(e.device_id, e.zone_id, e.at))
        visits = self.visits
        out = []
        for e in events:  # a cold round renames 100,000s, a dwell round as many: ``_renamed``
            visit = visits.get(e.visit_id, e.visit_id)
            out.append(_renamed(e, event_id_for(e, visit), visit))
        return out


def _renamed(e: ZoneEvent, event_id: str, visit_id: str) -> ZoneEvent:
    """``dataclasses.replace(e, id=event_id, visit_id=visit_id)`` in ~1 us instead of ~4 (``replace``
    walks the fields and calls the constructor with keywords). Every field is named here:
    ``test_renaming_keeps_every_other_field`` fails when ``ZoneEvent`` gains one this leaves out."""
    return ZoneEvent(event_id, e.zone_id, e.device_id, e.kind, e.at, visit_id, e.reason, e.lat, e.lng)
