"""How a zone was sized by travel time: the record a zone keeps (``Zone.travel``), pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from zones.errors import ZoneError


@dataclass(frozen=True)
class Travel:
    """How a zone was sized by travel time (kept in the zone, shown in its details).

    ``mode``/``method`` are what was drawn; ``requested_mode``/``requested_method`` what was asked.
    ``fallback`` says why a circle was drawn instead of an isochrone (None when the isochrone was drawn);
    ``auto_rule`` how mode "auto" decided. ``lat, lng`` is the store: an isochrone is recomputed from it.
    """

    lat: float
    lng: float
    mode: str
    minutes: float
    method: str
    requested_mode: str
    requested_method: str = "isochrone"
    speeds_kmh: Mapping[str, float] = field(default_factory=dict)
    buffer_m: float | None = None
    extract: str | None = None
    extract_date: str | None = None  # ISO 8601, the data's date (not the file's)
    fallback: str | None = None
    auto_rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["speeds_kmh"] = dict(self.speeds_kmh)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Travel:
        if not isinstance(d, Mapping):
            raise ZoneError("travel must be an object")
        try:
            speeds = d.get("speeds_kmh") or {}
            return cls(
                lat=float(d["lat"]), lng=float(d["lng"]), mode=str(d["mode"]), minutes=float(d["minutes"]),
                method=str(d["method"]), requested_mode=str(d.get("requested_mode", d["mode"])),
                requested_method=str(d.get("requested_method", "isochrone")),
                speeds_kmh={str(k): float(v) for k, v in dict(speeds).items()},
                buffer_m=None if d.get("buffer_m") is None else float(d["buffer_m"]),
                extract=d.get("extract"), extract_date=d.get("extract_date"), fallback=d.get("fallback"),
                auto_rule=d.get("auto_rule"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ZoneError(f"malformed travel: {exc}") from None

    @property
    def label(self) -> str:
        """'5 min on foot' / '5 min by car' (what a console shows)."""
        return f"{self.minutes:g} min {'on foot' if self.mode == 'walk' else 'by car'}"
