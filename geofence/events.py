"""Zone events: the shared vocabulary between presence (geofence) and campaigns."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class TransitionKind(StrEnum):
    ENTER = "enter"
    DWELL = "dwell"
    EXIT = "exit"


@dataclass(frozen=True, slots=True)
class ZoneEvent:
    """One transition of one device in one zone.

    ``lat``/``lng`` are rounded to about 100 m (3 decimals) before they leave the core: the engine keeps
    where a visit happened, not the device's exact track. ``visit_id`` ties enter, dwell and exit of one
    stay together (campaign caps count visits). ``reason`` says which rule fired.
    """

    id: str
    zone_id: str
    device_id: str
    kind: TransitionKind
    at: datetime
    visit_id: str
    reason: str
    lat: float | None = None
    lng: float | None = None


EventSubscriber = Callable[[Sequence[ZoneEvent]], None]


class EventBus:
    """In-process fan-out of committed zone events (campaigns subscribe).

    Subscribers are called after the events are persisted; one failing subscriber does not stop the
    others, and its exception is re-raised to the caller only after all were called.
    """

    def __init__(self) -> None:
        self._subscribers: list[EventSubscriber] = []

    def subscribe(self, subscriber: EventSubscriber) -> None:
        self._subscribers.append(subscriber)

    def publish(self, events: Sequence[ZoneEvent]) -> None:
        if not events:
            return
        errors: list[BaseException] = []
        for subscriber in self._subscribers:
            try:
                subscriber(events)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def round_position(lat: float, lng: float) -> tuple[float, float]:
    """Round to 3 decimals (~110 m in latitude): enough to place a visit, not to track a person."""
    return round(lat, 3), round(lng, 3)
