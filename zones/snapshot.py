"""A built ``ZoneIndex`` in one file, so that a process restarts without covering every zone again.

Why: building the tables of a million zones costs minutes of CPU; reading them back costs the time to
read a few GB and to decode the zones. The file (numpy's ``.npz``, uncompressed, no pickles) holds the base
table's arrays, each slot's resolution, reference point and reach, and the zones as JSON (``Zone.to_dict``);
zones changed since the last ``compact()`` are stored as zones and re-added on load (``add_many``).
A file of another ``FORMAT``, or one whose arrays disagree in length, is refused (``SnapshotError``): the
caller then builds from its zones.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec
import numpy as np

from zones.build import Tables
from zones.index import ZoneIndex
from zones.model import Zone

FORMAT = 1


class SnapshotError(ValueError):
    """The file is not a snapshot this code can read."""


def write_snapshot(index: ZoneIndex, path: str | Path) -> None:
    """Write ``index`` to ``path`` atomically (a temporary file renamed over it)."""
    base, res, ref, reach, tables, later = index.packed()
    enc = msgspec.json.Encoder()
    zones = enc.encode([None if z is None else z.to_dict() for z in base])
    extra = enc.encode([z.to_dict() for z in later])
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.savez(
            f, format=np.array([FORMAT]), res=res, ref=ref, reach=reach, t_res=tables.res,
            kstart=tables.kstart, keys=tables.keys, istart=tables.istart, bstart=tables.bstart,
            islots=tables.islots, bslots=tables.bslots, zones=np.frombuffer(zones, dtype=np.uint8),
            later=np.frombuffer(extra, dtype=np.uint8),
        )
    os.replace(tmp, path)


def read_snapshot(path: str | Path) -> ZoneIndex:
    """The index written to ``path`` by :func:`write_snapshot`; raises SnapshotError if unreadable."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if int(f["format"][0]) != FORMAT:
                raise SnapshotError(f"snapshot format {int(f['format'][0])}, expected {FORMAT}")
            a = {k: f[k] for k in f.files}
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, SnapshotError):
            raise
        raise SnapshotError(f"unreadable snapshot {path}: {exc}") from None
    dec = msgspec.json.Decoder()
    zones = [None if d is None else Zone.from_dict(d) for d in dec.decode(a["zones"].tobytes())]
    later = [Zone.from_dict(d) for d in dec.decode(a["later"].tobytes())]
    n = len(zones)
    if not (len(a["res"]) == len(a["reach"]) == len(a["ref"]) == n) or len(a["keys"]) != len(a["istart"]):
        raise SnapshotError("snapshot arrays disagree in length")
    tables = Tables(a["t_res"], a["kstart"], a["keys"], a["istart"], a["bstart"], a["islots"], a["bslots"])
    return ZoneIndex.restore(zones, a["res"], a["ref"], a["reach"], tables, later)


__all__ = ["FORMAT", "SnapshotError", "read_snapshot", "write_snapshot"]
