"""SMS encoding, segment count and legal mentions (pure)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.sms_content import (
    GSM7,
    GSM7_BASIC,
    GSM7_EXTENSION,
    UCS2,
    analyse,
    append_legal_mentions,
    opt_out_mention,
    prepare_marketing_sms,
)


@pytest.mark.parametrize(
    ("body", "encoding", "segments", "length"),
    [
        ("", GSM7, 1, 0),
        ("a" * 160, GSM7, 1, 160),
        ("a" * 161, GSM7, 2, 161),
        ("a" * 306, GSM7, 2, 306),
        ("a" * 307, GSM7, 3, 307),
        ("é" * 160, GSM7, 1, 160),  # é, è, ù, à, ì, ò are in the basic table
        ("€" * 80, GSM7, 1, 160),  # extension characters cost two septets
        ("€" * 81, GSM7, 2, 162),
        ("a" * 152 + "€" * 5, GSM7, 2, 162),  # the escape pair is never split: 152 + 10 in segment 2
        ("a" * 152 + "€" * 77, GSM7, 3, 306),  # 306 septets would fit 2 x 153 without that rule
        ("ç" * 70, UCS2, 1, 70),  # lowercase c-cedilla is not GSM (only Ç is)
        ("ê" + "a" * 70, UCS2, 2, 71),
        ("ê" * 134, UCS2, 2, 134),
        ("ê" * 135, UCS2, 3, 135),
        ("😀" * 35, UCS2, 1, 70),  # an emoji is a surrogate pair: two UTF-16 units
        ("😀" * 36, UCS2, 2, 72),
    ],
)
def test_encoding_segments_and_length(body, encoding, segments, length):
    result = analyse(body)
    assert (result.encoding, result.segments, result.length) == (encoding, segments, length)


def test_surrogate_pair_is_not_split_across_segments():
    # 66 units then an emoji: the emoji cannot start in unit 67 of the first segment.
    result = analyse("ê" * 66 + "😀" + "ê" * 4)
    assert result.length == 72
    assert result.segments == 2
    result = analyse("ê" * 67 + "😀" * 34)  # 67 + 68 units: segment 2 holds 33 emojis, 3 the last
    assert result.segments == 3


def test_non_gsm_characters_are_reported_for_the_warning():
    result = analyse("Offre spéciale ✨ ce soir, façon chef ✨")
    assert result.encoding == UCS2
    assert result.non_gsm == ("✨", "ç")
    assert result.warning(max_segments=2) is None
    assert "UCS-2 because of '✨ç'" in analyse("✨ç" * 100).warning(max_segments=2)


def test_warning_above_configured_segments():
    assert analyse("a" * 306).warning(max_segments=2) is None
    message = analyse("a" * 307).warning(max_segments=2)
    assert message is not None
    assert "3 segments" in message


_gsm_basic = st.text(alphabet=sorted(GSM7_BASIC), max_size=800)


@given(_gsm_basic)
def test_basic_gsm_text_follows_the_textbook_formula(body):
    result = analyse(body)
    assert result.encoding == GSM7
    assert result.length == len(body)
    assert result.segments == (1 if len(body) <= 160 else math.ceil(len(body) / 153))


@given(st.text(alphabet=sorted(GSM7_BASIC | GSM7_EXTENSION), max_size=600))
def test_gsm_segments_hold_at_most_153_septets(body):
    result = analyse(body)
    assert result.encoding == GSM7
    if result.length > 160:
        assert math.ceil(result.length / 153) <= result.segments <= math.ceil(result.length / 152)


@given(st.text(max_size=400))
def test_any_text_is_analysed_without_error(body):
    result = analyse(body)
    assert result.segments >= 1
    assert result.characters == len(body)
    if result.encoding == UCS2:
        assert result.length == len(body.encode("utf-16-le")) // 2


# --- legal mentions -----------------------------------------------------------------------------


def test_french_marketing_sms_names_advertiser_and_short_code():
    text = append_legal_mentions(
        "-20% sur les croissants jusqu'à 11h", advertiser="Boulangerie Paul", locale="fr-FR",
        sender="36123",
    )
    assert text == "Boulangerie Paul: -20% sur les croissants jusqu'à 11h STOP au 36123"
    assert analyse(text).encoding == GSM7  # the mention does not force UCS-2


def test_english_marketing_sms_gets_reply_stop():
    text = append_legal_mentions("Coffee 2 for 1 until noon", advertiser="Joe's", locale="en_US",
                                 sender="+15005550006")
    assert text == "Joe's: Coffee 2 for 1 until noon Reply STOP to opt out"


def test_mentions_are_not_added_twice():
    once = append_legal_mentions("Promo", advertiser="Paul", locale="fr", sender="36123")
    assert append_legal_mentions(once, advertiser="Paul", locale="fr", sender="36123") == once


def test_advertiser_already_named_is_not_prefixed():
    text = append_legal_mentions("Chez PAUL ce matin: -20%", advertiser="Paul", locale="fr", sender="36123")
    assert text == "Chez PAUL ce matin: -20% STOP au 36123"


def test_a_mention_for_another_sender_does_not_count():
    text = append_legal_mentions("Paul: promo STOP au 36000", advertiser="Paul", locale="fr", sender="36123")
    assert text.endswith("STOP au 36123")


def test_french_without_known_number_still_offers_opt_out():
    assert opt_out_mention(locale="fr-FR", sender=None) == "Répondez STOP pour vous désabonner"


def test_unknown_locale_falls_back_to_english():
    assert opt_out_mention(locale="de-DE", sender=None) == "Reply STOP to opt out"


def test_alphanumeric_sender_is_refused_for_marketing():
    with pytest.raises(ValueError, match="cannot reply STOP"):
        append_legal_mentions("Promo", advertiser="Paul", locale="fr", sender="PAULSHOP")


def test_advertiser_is_required():
    with pytest.raises(ValueError, match="advertiser"):
        append_legal_mentions("Promo", advertiser="  ", locale="fr", sender="36123")


def test_prepare_marketing_sms_analyses_the_text_with_its_mentions():
    body = "a" * 150
    prepared = prepare_marketing_sms(body, advertiser="Paul", locale="fr", sender="36123", max_segments=1)
    assert prepared.text == f"Paul: {body} STOP au 36123"
    assert prepared.analysis.segments == 2  # the mentions pushed it past 160 septets
    assert prepared.warning is not None
    assert prepared.as_dict()["segments"] == 2
    assert prepared.as_dict()["encoding"] == GSM7
