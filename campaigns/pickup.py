"""Click-and-collect: the pure state machine of one order, from "placed" to "picked up".

``step(order, observation, policy) -> (order', [events])`` is total and deterministic: no clock, no
database. The adapter (``campaigns.orders``) feeds it, in time order, what it learns about the
customer — positions of their devices (``Seen``), zone events (``Entered``), the store's confirmation
(``PickedUp``), a cancellation (``Cancelled``) — and the passing of time (``Tick``), then stores the
new state and publishes the events in one transaction.

The events (docs/orders.md), each once per order and each with the time it happened:

- ``ready`` at the order's ready time (or its creation, if placed ready);
- ``approaching`` when a position falls within ``minutes`` of the store (``Approach``) — or, when the
  phone has stopped sharing its location, at the scheduled time (``basis="schedule"``);
- ``arrived`` at the enter (or dwell) of the order's store zone; ``approaching`` goes first if it had
  not fired (a sparse feed may jump straight in);
- ``arrived_at_wrong_store`` at the enter of another store's zone of the same retailer, while the
  order waits (once per zone in a row);
- ``picked_up`` when the store confirms, with the wait since the arrival; ``cancelled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from zones.sizing import PROFILES

EARTH_RADIUS_M = 6_371_008.8


class OrderStatus(StrEnum):
    PLACED = "placed"  # not ready yet
    READY = "ready"
    PICKED_UP = "picked_up"
    CANCELLED = "cancelled"


OPEN = (OrderStatus.PLACED, OrderStatus.READY)


class OrderEventType(StrEnum):
    READY = "order.ready"
    APPROACHING = "order.approaching"
    ARRIVED = "order.arrived"
    ARRIVED_AT_WRONG_STORE = "order.arrived_at_wrong_store"
    PICKED_UP = "order.picked_up"
    CANCELLED = "order.cancelled"


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle (haversine) distance in metres between two (lat, lng) points in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


@dataclass(frozen=True)
class Approach:
    """Where "within ``minutes`` of the store" is.

    Either a circle — the straight-line distance covered in ``minutes`` by the zone's travel
    ``profile`` (``zones.sizing.PROFILES``: speed and detour factor) — or, for a street-based zone, the
    ``minutes`` isochrone around the store (``geojson``, positions ``[lng, lat]``).
    """

    minutes: float
    lat: float  # the store
    lng: float
    profile: str | None = None
    geojson: dict[str, Any] | None = None
    _shape: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.geojson is None and self.profile not in PROFILES:
            raise ValueError(f"an approach needs a profile of {sorted(PROFILES)} or an isochrone")
        if self.geojson is not None:
            import shapely
            from shapely.geometry import shape

            prepared = shape(self.geojson)
            shapely.prepare(prepared)
            object.__setattr__(self, "_shape", prepared)

    @property
    def radius_m(self) -> float | None:
        """The circle's radius (None for an isochrone)."""
        return (
            None
            if self.profile is None or self.geojson is not None
            else PROFILES[self.profile].radius_m(self.minutes)
        )

    def eta_minutes(self, lat: float, lng: float) -> float | None:
        """Minutes to the store at the profile's speed (None for an isochrone: inside or not only)."""
        if self.geojson is not None or self.profile is None:
            return None
        prof = PROFILES[self.profile]
        metres = distance_m(lat, lng, self.lat, self.lng) * prof.detour
        return metres / (prof.speed_kmh * 1000.0 / 60.0)

    def contains(self, lat: float, lng: float) -> bool:
        if self._shape is not None:
            import shapely

            return bool(shapely.contains_xy(self._shape, lng, lat))
        radius = self.radius_m
        return radius is not None and distance_m(lat, lng, self.lat, self.lng) <= radius

    def to_dict(self) -> dict[str, Any]:
        return {
            "minutes": self.minutes,
            "lat": self.lat,
            "lng": self.lng,
            "profile": self.profile,
            "geojson": self.geojson,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Approach:
        return cls(
            minutes=float(d["minutes"]),
            lat=float(d["lat"]),
            lng=float(d["lng"]),
            profile=d.get("profile"),
            geojson=d.get("geojson"),
        )


@dataclass(frozen=True)
class PickupPolicy:
    """``stale_after``: a customer with no position for this long has stopped sharing (the schedule
    stands in). ``early``: observations older than the order's creation by more than this belong to an
    earlier visit. ``max_accuracy_m``: worse positions say nothing about approaching."""

    stale_after: timedelta = timedelta(minutes=10)
    early: timedelta = timedelta(minutes=15)
    max_accuracy_m: float = 150.0


@dataclass(frozen=True, slots=True)
class Order:
    """One order's state. ``last_seen_at``: the newest position or zone event of the customer's devices."""

    id: str
    customer_id: str
    store_zone_id: str
    created_at: datetime
    ready_at: datetime
    approach: Approach
    pickup_from: datetime | None = None
    pickup_until: datetime | None = None
    status: OrderStatus = OrderStatus.PLACED
    approaching_at: datetime | None = None
    approaching_basis: str | None = None
    arrived_at: datetime | None = None
    wrong_store_zone_id: str | None = None
    picked_up_at: datetime | None = None
    cancelled_at: datetime | None = None
    last_seen_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN

    @property
    def expected_at(self) -> datetime:
        """When the customer is expected: the start of the pickup window, else the ready time."""
        return self.pickup_from or self.ready_at

    @property
    def scheduled_approach_at(self) -> datetime:
        """When a customer arriving on schedule would come within ``minutes`` of the store."""
        return self.expected_at - timedelta(minutes=self.approach.minutes)


@dataclass(frozen=True, slots=True)
class Seen:
    """A position of one of the customer's devices (a fix, or a zone event's rounded position)."""

    at: datetime
    lat: float
    lng: float
    accuracy_m: float


@dataclass(frozen=True, slots=True)
class Entered:
    """An enter or dwell at ``zone_id``; ``other_store``: the zone is another store's of the retailer."""

    at: datetime
    zone_id: str
    other_store: bool = False


@dataclass(frozen=True, slots=True)
class Tick:
    at: datetime


@dataclass(frozen=True, slots=True)
class PickedUp:
    at: datetime


@dataclass(frozen=True, slots=True)
class Cancelled:
    at: datetime
    reason: str = ""


Observation = Seen | Entered | Tick | PickedUp | Cancelled


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """What happened to an order, when, and on what evidence (``basis``: location | schedule |
    store | clock | api)."""

    type: OrderEventType
    at: datetime
    basis: str
    details: dict[str, Any] = field(default_factory=dict)


Step = tuple[Order, list[OrderEvent]]


def step(order: Order, obs: Observation, policy: PickupPolicy) -> Step:
    """The order after ``obs``, and the events it caused (possibly none).

    Notes
    -----
    A closed order (picked up, cancelled) ignores everything. Positions and zone events from before
    the order (by more than ``policy.early``) are ignored. A ``Tick`` never moves the state backwards:
    a late one only does what was already due at its time.
    """
    if not order.is_open:
        return order, []
    if isinstance(obs, PickedUp):
        wait = None if order.arrived_at is None else max(0.0, (obs.at - order.arrived_at).total_seconds())
        done = replace(order, status=OrderStatus.PICKED_UP, picked_up_at=obs.at)
        return done, [OrderEvent(OrderEventType.PICKED_UP, obs.at, "store", {"wait_s": wait})]
    if isinstance(obs, Cancelled):
        done = replace(order, status=OrderStatus.CANCELLED, cancelled_at=obs.at)
        return done, [OrderEvent(OrderEventType.CANCELLED, obs.at, "api", {"reason": obs.reason})]
    if isinstance(obs, Tick):
        return _tick(order, obs.at, policy)
    if obs.at < order.created_at - policy.early:
        return order, []
    seen = replace(order, last_seen_at=max(order.last_seen_at or obs.at, obs.at))
    if isinstance(obs, Seen):
        return _seen(seen, obs, policy)
    return _entered(seen, obs)


def _tick(order: Order, at: datetime, policy: PickupPolicy) -> Step:
    events: list[OrderEvent] = []
    if order.status is OrderStatus.PLACED and at >= order.ready_at:
        order = replace(order, status=OrderStatus.READY)
        events.append(OrderEvent(OrderEventType.READY, max(order.ready_at, order.created_at), "clock"))
    if order.approaching_at is None and order.arrived_at is None:
        # The schedule stands in from the later of: the scheduled approach, and the moment the phone
        # went silent — its last position + stale_after (never seen: the order's creation + stale_after,
        # the time a phone is given to show up).
        silent_from = (order.last_seen_at or order.created_at) + policy.stale_after
        stands_in_at = max(order.scheduled_approach_at, silent_from)
        if at >= stands_in_at:
            order = replace(order, approaching_at=stands_in_at, approaching_basis="schedule")
            details = {
                "minutes": order.approach.minutes,
                "expected_at": order.expected_at.isoformat(),
                "last_seen_at": None if order.last_seen_at is None else order.last_seen_at.isoformat(),
            }
            events.append(OrderEvent(OrderEventType.APPROACHING, stands_in_at, "schedule", details))
    return order, events


def _approaching(order: Order, at: datetime, details: dict[str, Any]) -> Step:
    order = replace(order, approaching_at=at, approaching_basis="location")
    return order, [
        OrderEvent(OrderEventType.APPROACHING, at, "location", {"minutes": order.approach.minutes, **details})
    ]


def _seen(order: Order, obs: Seen, policy: PickupPolicy) -> Step:
    if order.approaching_at is not None or order.arrived_at is not None:
        return order, []
    if obs.accuracy_m > policy.max_accuracy_m or not order.approach.contains(obs.lat, obs.lng):
        return order, []
    eta = order.approach.eta_minutes(obs.lat, obs.lng)
    metres = distance_m(obs.lat, obs.lng, order.approach.lat, order.approach.lng)
    return _approaching(
        order, obs.at, {"distance_m": round(metres), "eta_minutes": None if eta is None else round(eta, 1)}
    )


def _entered(order: Order, obs: Entered) -> Step:
    if order.arrived_at is not None:
        return order, []
    if obs.zone_id == order.store_zone_id:
        events: list[OrderEvent] = []
        if order.approaching_at is None:
            order, events = _approaching(order, obs.at, {"distance_m": 0, "eta_minutes": 0.0})
        order = replace(order, arrived_at=obs.at, wrong_store_zone_id=None)
        return order, [
            *events,
            OrderEvent(OrderEventType.ARRIVED, obs.at, "location", {"zone_id": obs.zone_id}),
        ]
    if obs.other_store and obs.zone_id != order.wrong_store_zone_id:
        order = replace(order, wrong_store_zone_id=obs.zone_id)
        details = {"zone_id": obs.zone_id, "expected_zone_id": order.store_zone_id}
        return order, [OrderEvent(OrderEventType.ARRIVED_AT_WRONG_STORE, obs.at, "location", details)]
    return order, []


def run(order: Order, observations: list[Observation], policy: PickupPolicy) -> Step:
    """``step`` over ``observations`` in the given order, the events concatenated."""
    events: list[OrderEvent] = []
    for obs in observations:
        order, fired = step(order, obs, policy)
        events.extend(fired)
    return order, events


def wait_median_s(waits_s: list[float]) -> float | None:
    """The median of arrival-to-pickup waits (seconds), None when there is none."""
    if not waits_s:
        return None
    ordered = sorted(waits_s)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
