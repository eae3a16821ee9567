"""Render a campaign's template for one recipient, pure: locale choice, personalisation, SMS mentions.

Placeholders: {first_name} {store_name} {distance} {directions_url} {offer_expiry} {campaign_name}.
The directions link is only a string, nothing is fetched: Apple Maps on iOS, Google Maps elsewhere (both
open the platform's maps app), in the zone's travel mode (walking or driving) when it has one.
SMS bodies get the advertiser and opt-out mention from ``campaigns.sms_content`` (the channels module).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from campaigns.model import Campaign, ZoneInfo
from campaigns.windows import zone as tz_zone

if TYPE_CHECKING:
    from campaigns.decide import Defer, Recipient, Send
    from geofence.events import ZoneEvent

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class Rendered:
    locale: str
    title: str | None
    body: str
    data: dict[str, str] = field(default_factory=dict)


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def format_distance(meters: float | None, locale: str) -> str:
    if meters is None:
        return ""
    decimal = "," if locale.startswith("fr") else "."
    if meters < 1000:
        return f"{int(round(meters / 10.0) * 10)} m"
    return f"{meters / 1000:.1f} km".replace(".", decimal)


# Apple Map Links ``dirflg`` (d: by car, w: on foot) and Google Maps URLs ``travelmode``:
# developer.apple.com/library/archive/featuredarticles/iPhoneURLScheme_Reference/MapLinks/MapLinks.html,
# developers.google.com/maps/documentation/urls/get-started#directions-action
_APPLE_MODE = {"walk": "w", "drive": "d"}
_GOOGLE_MODE = {"walk": "walking", "drive": "driving"}


def directions_url(zone: ZoneInfo, platform: str | None = None) -> str:
    """Directions to the store in its travel mode: Apple Maps on iOS, Google Maps on Android and else."""
    if zone.lat is None or zone.lng is None:
        return ""
    where = f"{zone.lat:.6f},{zone.lng:.6f}"
    if platform == "ios":
        mode = _APPLE_MODE.get(zone.travel_mode or "")
        return f"https://maps.apple.com/?daddr={where}" + (f"&dirflg={mode}" if mode else "")
    mode = _GOOGLE_MODE.get(zone.travel_mode or "")
    google = f"https://www.google.com/maps/dir/?api=1&destination={where}"
    return google + (f"&travelmode={mode}" if mode else "")


def format_expiry(expires_at: datetime, tz: str, locale: str) -> str:
    """Offer expiry in the store's local time: "18:30" today, else "23/11 18:30" (fr) / "11/23 6:30 PM"."""
    local = expires_at.astimezone(tz_zone(tz))
    if locale.startswith("en"):
        return local.strftime("%m/%d %I:%M %p").lstrip("0")
    return local.strftime("%d/%m %H:%M")


class _Blank(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return ""


def render(
    campaign: Campaign,
    zone: ZoneInfo,
    *,
    channel: str,
    locale: str | None,
    first_name: str | None,
    expires_at: datetime,
    position: tuple[float, float] | None = None,
    platform: str | None = None,
) -> Rendered:
    """The message for one recipient.

    Parameters
    ----------
    position : (lat, lng) of the trigger (rounded by presence), for ``{distance}``; None leaves it blank.
    platform : the recipient device's ("ios" | "android"), for the maps app of ``{directions_url}``.

    Notes
    -----
    A missing first name renders as an empty string and the doubled spaces it leaves are collapsed.
    SMS bodies carry the legal mentions (advertiser + "STOP au 36xxx"); ``ValueError`` from the mentions
    (e.g. an alphanumeric sender) propagates: such a campaign must not send SMS.
    """
    chosen, template = campaign.template_for(locale)
    dist = None
    if position is not None and zone.lat is not None and zone.lng is not None:
        dist = distance_m(position[0], position[1], zone.lat, zone.lng)
    values = _Blank(
        first_name=(first_name or "").strip(),
        store_name=zone.name,
        distance=format_distance(dist, chosen),
        directions_url=directions_url(zone, platform),
        offer_expiry=format_expiry(expires_at, zone.tz, chosen),
        campaign_name=campaign.name,
    )
    body = " ".join(template.body.format_map(values).split())
    title = " ".join(template.title.format_map(values).split()) if template.title else None
    if channel == "sms":
        from campaigns.sms_content import append_legal_mentions  # channels module, loaded when needed

        body = append_legal_mentions(
            body,
            advertiser=campaign.advertiser or zone.name or campaign.name,
            locale=chosen,
            sender=campaign.sender,
        )
    data = {"campaign_id": campaign.id, "zone_id": zone.id, "expires_at": expires_at.isoformat()}
    if values["directions_url"]:
        data["directions_url"] = values["directions_url"]
    return Rendered(locale=chosen, title=title, body=body, data=data)


def render_for_event(
    campaign: Campaign, zone: ZoneInfo, event: ZoneEvent, recipient: Recipient, decision: Send | Defer
) -> Rendered:
    """``render`` of a decision to send for a zone event, to its recipient: the event's rounded position
    feeds ``{distance}`` when it has one.

    The live path (handler) and the dry run both call this, so a dry run shows exactly what would go out.
    """
    position = (event.lat, event.lng) if event.lat is not None and event.lng is not None else None
    return render(
        campaign,
        zone,
        channel=decision.channel,
        locale=recipient.locale,
        first_name=recipient.first_name,
        expires_at=decision.expires_at,
        position=position,
        platform=recipient.platform,
    )
