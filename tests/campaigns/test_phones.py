"""Phone numbers: E.164 validation, keyed hashing and masking."""

from __future__ import annotations

import pytest

from campaigns.phones import InvalidPhone, guess_locale, mask_phone, mask_token, phone_hash, to_e164


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", None, "+33612345678"),
        ("0033612345678", "FR", "+33612345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("+1 415 555 2671", "FR", "+14155552671"),
        ("0690 12 34 56", "GP", "+590690123456"),
    ],
)
def test_valid_numbers_come_out_in_e164(raw, region, expected):
    assert to_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("", "empty"), ("abc", "cannot be parsed"), ("06 12", "not a valid"), ("+33 1", "cannot be parsed"),
     ("1" * 50, "too long"), ("+999 12345", "cannot be parsed"), ("06 12 34 56 78", "cannot be parsed")],
)  # fmt: skip
def test_invalid_numbers_are_refused_with_a_reason(raw, reason):
    region = None if raw == "06 12 34 56 78" else "FR"
    with pytest.raises(InvalidPhone, match=reason):
        to_e164(raw, region)


def test_hash_is_keyed_stable_and_not_the_number():
    a = phone_hash("+33612345678", "key-one")
    assert a == phone_hash("+33612345678", b"key-one")
    assert a != phone_hash("+33612345678", "key-two")
    assert a != phone_hash("+33612345679", "key-one")
    assert "33612345678" not in a and len(a) == 64


def test_masks_keep_no_dialable_number_or_usable_token():
    assert mask_phone("+33612345678") == "+33*******78"
    assert mask_phone(None) == "<none>" and mask_phone("123") == "***"
    token = "fcm-token-" + "x" * 150
    assert mask_token(token) == f"fcm-to…({len(token)})"
    assert token not in mask_token(token)


@pytest.mark.parametrize(
    ("number", "locale"),
    [("+33612345678", "fr"), ("+590690123456", "fr"), ("+262692123456", "fr"), ("+14155552671", "en"),
     ("+447911123456", "en"), ("not-a-number", "en")],
)  # fmt: skip
def test_reply_language_guessed_from_the_country_code(number, locale):
    assert guess_locale(number) == locale
