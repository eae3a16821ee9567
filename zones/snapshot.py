"""A built ``ZoneIndex`` in one file, so that a process restarts without covering every zone again.

Why: building the tables of a million zones costs minutes of CPU; a restart should cost the time to map a
file. The file is a small JSON header followed by raw, 64-byte-aligned numpy arrays (no pickles): the base
table's arrays, each slot's resolution, reference point, reach and circle row, the ids, and every zone's
JSON (``Zone.to_dict``) with its offsets. Reading maps the file (``mmap``): the arrays are used in place,
and a zone is decoded only when something asks for it (``zones.entries.LazyEntries``), so a million-zone
index answers ``match_many`` a few seconds after start-up. Zones changed since the last ``compact()`` are
stored as zones and re-added on load (``add_many``).

``meta`` (a JSON object given to ``write_snapshot``, returned by ``read_snapshot``) is for the owner: the
service records there which state of its zones table the index reflects (``geofence.service.wiring``).
A file of another ``FORMAT``, truncated, or whose arrays disagree in length, is refused
(``SnapshotError``): the caller then builds from its zones.
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from zones.build import Tables
from zones.index import ZoneIndex
from zones.model import Zone
from zones.packing import Packed

FORMAT = 2
MAGIC = b"GEOFENCE-ZONES\x00\x00"  # 16 bytes, then the header's length (8 bytes, little endian)
_ALIGN = 64


class SnapshotError(ValueError):
    """The file is not a snapshot this code can read."""


def _body(z: Zone | bytes | None, enc: msgspec.json.Encoder) -> bytes:
    if z is None:
        return b""
    return z if isinstance(z, bytes) else enc.encode(z.to_dict())


def write_snapshot(index: ZoneIndex | Packed, path: str | Path, meta: dict[str, Any] | None = None) -> None:
    """Write ``index`` (or what its ``packed()`` returned, taken under the owner's lock) to ``path``
    atomically (a temporary file renamed over it)."""
    p = index.packed() if isinstance(index, ZoneIndex) else index
    enc = msgspec.json.Encoder()
    bodies = [_body(z, enc) for z in p.bodies]
    offsets = np.zeros(len(bodies) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in bodies], out=offsets[1:])
    t = p.tables
    arrays = {
        "res": p.res, "ref": p.ref, "reach": p.reach, "circ": p.circ, "t_res": t.res, "kstart": t.kstart,
        "keys": t.keys, "istart": t.istart, "bstart": t.bstart, "islots": t.islots, "bslots": t.bslots,
        "offsets": offsets,
        "bodies": np.frombuffer(b"".join(bodies), dtype=np.uint8),
        "ids": np.frombuffer(enc.encode(list(p.ids)), dtype=np.uint8),
        "later": np.frombuffer(enc.encode([z.to_dict() for z in p.later]), dtype=np.uint8),
    }
    del bodies
    layout: dict[str, Any] = {}
    at = 0
    for name, a in arrays.items():
        a = np.ascontiguousarray(a)
        arrays[name] = a
        layout[name] = [a.dtype.str, list(a.shape), at]
        at += -(-a.nbytes // _ALIGN) * _ALIGN
    header = json.dumps({"format": FORMAT, "room": p.room, "arrays": layout, "meta": meta or {}}).encode()
    start = -(-(len(MAGIC) + 8 + len(header)) // _ALIGN) * _ALIGN
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(MAGIC + len(header).to_bytes(8, "little") + header)
        for name, a in arrays.items():
            f.seek(start + layout[name][2])
            f.write(a.data)
        f.truncate(start + at)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_snapshot(path: str | Path) -> tuple[ZoneIndex, dict[str, Any]]:
    """(the index written to ``path`` by :func:`write_snapshot`, its ``meta``); raises SnapshotError if
    the file is unreadable. The file stays mapped while the index uses it (replacing it is safe: a rename
    keeps the mapped file alive)."""
    try:
        with open(path, "rb") as f:
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"unreadable snapshot {path}: {exc}") from None
    try:
        if mm[: len(MAGIC)] != MAGIC:
            raise SnapshotError(f"{path} is not a zone snapshot")
        size = int.from_bytes(mm[len(MAGIC) : len(MAGIC) + 8], "little")
        head = json.loads(mm[len(MAGIC) + 8 : len(MAGIC) + 8 + size])
        if head.get("format") != FORMAT:
            raise SnapshotError(f"snapshot format {head.get('format')}, expected {FORMAT}")
        start = -(-(len(MAGIC) + 8 + size) // _ALIGN) * _ALIGN
        a = {}
        for name, (dtype, shape, at) in head["arrays"].items():
            count = int(np.prod(shape))
            a[name] = np.frombuffer(mm, dtype=np.dtype(dtype), count=count, offset=start + at).reshape(shape)
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SnapshotError(f"damaged snapshot {path}: {exc}") from None
    dec = msgspec.json.Decoder()
    ids = dec.decode(a["ids"].tobytes())
    n = len(ids)
    if not len(a["res"]) == len(a["reach"]) == len(a["ref"]) == len(a["circ"]) == len(a["offsets"]) - 1 == n:
        raise SnapshotError("snapshot arrays disagree in length")
    if len(a["keys"]) != len(a["istart"]):
        raise SnapshotError("snapshot tables disagree in length")
    offsets, blob = a["offsets"], a["bodies"]

    def body(s: int) -> bytes:
        return bytes(blob[offsets[s] : offsets[s + 1]])

    def zone_of(s: int) -> Zone:
        return Zone.from_dict(dec.decode(body(s)))

    tables = Tables(a["t_res"], a["kstart"], a["keys"], a["istart"], a["bstart"], a["islots"], a["bslots"])
    later = [Zone.from_dict(d) for d in dec.decode(a["later"].tobytes())]
    bodies = _Bodies(n, body)
    packed = Packed(ids, bodies, a["res"], a["ref"], a["reach"], a["circ"], tables, int(head["room"]), later)
    return ZoneIndex.restore(packed, zone_of), head["meta"]


class _Bodies(Sequence[bytes]):
    """``Packed.bodies`` of a read snapshot: each zone's JSON, sliced from the mapped file when asked."""

    def __init__(self, n: int, body: Any) -> None:
        self._n, self._body = n, body

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, s: int) -> bytes:  # type: ignore[override]  # no slices: Packed reads slots
        return self._body(s)  # type: ignore[no-any-return]


__all__ = ["FORMAT", "SnapshotError", "read_snapshot", "write_snapshot"]
