"""FencePolicy: the presence rules of one zone (global defaults merged with the zone's own settings).

Pure: built from plain values. ``policy_from_defaults`` reads the ``settings.fence`` group (any object
with those attributes); ``policy_for_zone`` applies a zone's ``zones.FenceSettings`` overrides, its size
and its travel profile.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from geofence.fixes import FixLimits

# Highest speed at which a device may *enter* a zone sized for a travel profile: someone driving through
# a pedestrian zone is passing, not visiting. Drive/transit zones have no limit.
MAX_ENTER_SPEED_MPS: dict[str, float] = {"walk": 4.0, "bike": 10.0}


@dataclass(frozen=True, slots=True)
class FencePolicy:
    """Rules for enter / dwell / exit in one zone.

    Attributes
    ----------
    dwell_after : time inside (fix time) before DWELL.
    dwell_evidence : the sweep fires a DWELL by timer only for a device seen this long after its enter
        (its last fix as stored: in service, once a heartbeat, ``geofence.ingest.HEARTBEAT``, so a
        value below it counts as one heartbeat). A single fix says nothing of a stay.
    silence_exit_after : no fix for this long while inside -> EXIT (reason ``inferred_silence``).
    enter_confirm_fixes : fixes that must qualify before ENTER (1 = the first one enters).
    exit_after_outside_fixes : consecutive outside fixes before EXIT; one wild fix never exits when >= 2.
    exit_margin_m : hysteresis: the accuracy disc must be clear of the zone by this much to count.
    max_accuracy_m : worst accuracy a fix may have to take part in a transition in this zone.
    enter_depth_ratio : the fix centre must be this many accuracy radii inside the boundary to enter
        (0.4 ~ three quarters of the accuracy disc inside, the overlap rule of Android/iOS).
    max_speed_mps : a jump implying more than this is implausible and ignored.
    max_enter_speed_mps : above this speed (reported or implied) a fix does not start an enter.
    stop_speed_mps : a reported speed at or below this confirms a pending enter at once ("a stop").
    spike_hold_m : 0 (off), or the distance from the device's previous fix at which a fix that would
        enter is held until the next fix: a lone out-and-back spike (``presence.is_spike``) then enters
        nothing. The cost: such an enter (a device arriving fast) fires one fix later, stamped at the held
        fix's time.
    spike_wait : how long a held enter waits for the next fix before the sweep lets it fire.
    """

    dwell_after: timedelta = timedelta(seconds=300)
    dwell_evidence: timedelta = timedelta(seconds=60)
    silence_exit_after: timedelta = timedelta(seconds=1800)
    enter_confirm_fixes: int = 1
    exit_after_outside_fixes: int = 2
    exit_margin_m: float = 25.0
    max_accuracy_m: float = 200.0
    enter_depth_ratio: float = 0.4
    max_speed_mps: float = 70.0
    max_enter_speed_mps: float | None = None
    stop_speed_mps: float = 0.5
    spike_hold_m: float = 0.0
    spike_wait: timedelta = timedelta(seconds=120)


def policy_from_defaults(fence: Any) -> FencePolicy:
    """Global policy from ``settings.fence`` (``geofence.service.settings.FenceDefaults``)."""
    return FencePolicy(
        dwell_after=timedelta(seconds=fence.dwell_after_s),
        silence_exit_after=timedelta(seconds=fence.silence_exit_after_s),
        enter_confirm_fixes=max(1, int(fence.enter_confirm_fixes)),
        exit_after_outside_fixes=max(1, int(fence.exit_after_outside_fixes)),
        exit_margin_m=float(fence.exit_margin_m),
        max_accuracy_m=float(fence.max_accuracy_m),
        max_speed_mps=float(fence.max_speed_mps),
        spike_hold_m=float(getattr(fence, "spike_hold_m", 0.0)),
    )


def limits_from_defaults(fence: Any) -> FixLimits:
    """Fix acceptance window from ``settings.fence``."""
    return FixLimits(
        clock_skew=timedelta(seconds=fence.clock_skew_s), max_age=timedelta(seconds=fence.max_fix_age_s)
    )


def policy_for_zone(
    base: FencePolicy, fence: Any | None, *, size_m: float | None = None, profile: str | None = None
) -> FencePolicy:
    """Merge a zone's overrides into the global policy.

    Parameters
    ----------
    base : the global policy.
    fence : a ``zones.FenceSettings`` (or None); its non-None fields win.
    size_m : the zone's radius (or equivalent radius). Without an explicit ``accuracy_tolerance_m``
        the accuracy limit is ``min(base.max_accuracy_m, max(2 * size_m, 30))``: a 50 m shop does not
        take part in transitions with a 300 m fix.
    profile : travel profile the zone was sized for (``walk``, ``bike``, ...), which bounds the enter speed.
    """
    changes: dict[str, Any] = {}
    if size_m is not None and size_m > 0:
        changes["max_accuracy_m"] = min(base.max_accuracy_m, max(2.0 * size_m, 30.0))
    if profile in MAX_ENTER_SPEED_MPS:
        changes["max_enter_speed_mps"] = MAX_ENTER_SPEED_MPS[profile]
    if fence is not None:
        if getattr(fence, "dwell_after_s", None) is not None:
            changes["dwell_after"] = timedelta(seconds=fence.dwell_after_s)
        if getattr(fence, "accuracy_tolerance_m", None) is not None:
            changes["max_accuracy_m"] = float(fence.accuracy_tolerance_m)
        if getattr(fence, "exit_margin_m", None) is not None:
            changes["exit_margin_m"] = float(fence.exit_margin_m)
        if getattr(fence, "enter_confirm_fixes", None) is not None:
            changes["enter_confirm_fixes"] = max(1, int(fence.enter_confirm_fixes))
        if getattr(fence, "spike_hold_m", None) is not None:
            changes["spike_hold_m"] = float(fence.spike_hold_m)
    return replace(base, **changes) if changes else base
