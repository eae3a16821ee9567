"""Rendering: locale choice, personalisation, directions link, expiry in store time, SMS mentions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from campaigns.model import ZoneInfo, parse_campaign
from campaigns.render import distance_m, format_distance, render

ZONE = ZoneInfo(id="z1", name="Café Lumière", tz="Europe/Paris", lat=48.8566, lng=2.3522)
EXPIRES = datetime(2026, 11, 23, 17, 30, tzinfo=UTC)  # 18:30 Paris


def campaign(**overrides: object):
    data: dict[str, object] = {
        "id": "c1",
        "name": "After work",
        "trigger": {"zone_ids": ["z1"]},
        "templates": {
            "fr": {
                "title": "Bonsoir {first_name}",
                "body": "{store_name} à {distance} : -20% jusqu'au {offer_expiry}. {directions_url}",
            },
            "en": {"body": "Hi {first_name}, {store_name} is {distance} away. Until {offer_expiry}."},
        },
        "advertiser": "Lumière",
        "sender": "36111",
    }
    data.update(overrides)
    return parse_campaign(data)


def test_french_push_is_personalised() -> None:
    out = render(
        campaign(),
        ZONE,
        channel="push",
        locale="fr-FR",
        first_name="Ana",
        expires_at=EXPIRES,
        position=(48.858, 2.352),
    )
    assert out.locale == "fr"
    assert out.title == "Bonsoir Ana"
    assert out.body.startswith("Café Lumière à 160 m : -20% jusqu'au 23/11 18:30. ")
    assert out.body.endswith("https://www.google.com/maps/dir/?api=1&destination=48.856600,2.352200")
    assert out.data["directions_url"].startswith("https://www.google.com/maps/dir/")
    assert "STOP" not in out.body


def test_english_locale_and_missing_first_name() -> None:
    out = render(campaign(), ZONE, channel="push", locale="en_GB", first_name=None, expires_at=EXPIRES)
    assert out.locale == "en"
    assert out.body == "Hi , Café Lumière is away. Until 11/23 06:30 PM."


def test_unknown_locale_falls_back_to_default() -> None:
    out = render(campaign(), ZONE, channel="push", locale="de", first_name="Jo", expires_at=EXPIRES)
    assert out.locale == "fr"


def test_sms_carries_advertiser_and_stop_mention() -> None:
    out = render(
        campaign(advertiser="Maison Dupont"),
        ZONE,
        channel="sms",
        locale="fr",
        first_name="Ana",
        expires_at=EXPIRES,
    )
    assert out.body.startswith("Maison Dupont: Café Lumière")
    assert out.body.endswith("STOP au 36111")


def test_sms_from_an_alphanumeric_sender_is_refused() -> None:
    with pytest.raises(ValueError, match="alphanumeric"):
        render(
            campaign(sender="LUMIERE"), ZONE, channel="sms", locale="fr", first_name="Ana", expires_at=EXPIRES
        )


@pytest.mark.parametrize(
    ("meters", "locale", "text"),
    [(None, "fr", ""), (42, "fr", "40 m"), (1530, "fr", "1,5 km"), (1530, "en", "1.5 km")],
)
def test_distance_format(meters: float | None, locale: str, text: str) -> None:
    assert format_distance(meters, locale) == text


def test_haversine_paris_to_london() -> None:
    assert distance_m(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343_500, rel=0.01)


@pytest.mark.parametrize(("travel_mode", "platform", "expected"), [
    ("walk", "ios", "https://maps.apple.com/?daddr=48.856600,2.352200&dirflg=w"),
    ("drive", "ios", "https://maps.apple.com/?daddr=48.856600,2.352200&dirflg=d"),
    ("walk", "android", "https://www.google.com/maps/dir/?api=1&destination=48.856600,2.352200&travelmode=walking"),
    ("drive", None, "https://www.google.com/maps/dir/?api=1&destination=48.856600,2.352200&travelmode=driving"),
    (None, "ios", "https://maps.apple.com/?daddr=48.856600,2.352200"),
])
def test_directions_open_the_platforms_maps_app_in_the_zones_mode(
    travel_mode: str | None, platform: str | None, expected: str
) -> None:
    zone = ZONE.model_copy(update={"travel_mode": travel_mode})
    out = render(campaign(), zone, channel="push", locale="fr", first_name="Ana", expires_at=EXPIRES,
                 platform=platform)
    assert out.data["directions_url"] == expected
    assert out.body.endswith(expected)
