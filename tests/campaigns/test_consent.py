"""The consent projection: per-purpose state from an append-only ledger, evaluated at an instant."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.consent import Purpose, consent_state, is_granted, may_contact, refusal_reason

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Entry:
    purpose: str
    granted: bool
    occurred_at: datetime
    recorded_at: datetime | None = None
    seq: int | None = None


def test_no_entry_means_no_consent_for_every_purpose():
    assert consent_state([], T0) == dict.fromkeys(Purpose, False)


def test_each_purpose_is_independent():
    state = consent_state([Entry("push_marketing", True, T0)], T0)
    assert state == {
        Purpose.PUSH_MARKETING: True, Purpose.SMS_MARKETING: False, Purpose.LOCATION_OFFERS: False,
        Purpose.STORE_WELCOME: False, Purpose.ORDER_UPDATES: False,
    }


def test_latest_occurrence_wins_whatever_the_input_order():
    entries = [
        Entry("sms_marketing", False, T0 + timedelta(hours=2)),
        Entry("sms_marketing", True, T0),
        Entry("sms_marketing", True, T0 + timedelta(hours=1)),
    ]
    assert consent_state(entries, T0 + timedelta(hours=3))[Purpose.SMS_MARKETING] is False
    assert consent_state(list(reversed(entries)), T0 + timedelta(hours=3))[Purpose.SMS_MARKETING] is False


def test_state_at_an_earlier_instant_ignores_later_entries_for_audits():
    entries = [Entry("sms_marketing", True, T0), Entry("sms_marketing", False, T0 + timedelta(days=1))]
    assert consent_state(entries, T0 + timedelta(hours=1))[Purpose.SMS_MARKETING] is True
    assert consent_state(entries, T0 - timedelta(seconds=1))[Purpose.SMS_MARKETING] is False


def test_backdated_withdrawal_recorded_late_still_beats_an_older_grant():
    grant = Entry("push_marketing", True, T0, recorded_at=T0)
    late_withdrawal = Entry(
        "push_marketing", False, T0 + timedelta(minutes=5), recorded_at=T0 + timedelta(days=2)
    )
    assert consent_state([late_withdrawal, grant], T0 + timedelta(days=3))[Purpose.PUSH_MARKETING] is False


def test_same_instant_tie_broken_by_recording_then_sequence_then_withdrawal():
    a = Entry("sms_marketing", False, T0, recorded_at=T0, seq=1)
    b = Entry("sms_marketing", True, T0, recorded_at=T0 + timedelta(seconds=1), seq=2)
    assert consent_state([b, a], T0)[Purpose.SMS_MARKETING] is True
    c = Entry("sms_marketing", True, T0, recorded_at=T0, seq=1)
    d = Entry("sms_marketing", False, T0, recorded_at=T0, seq=1)
    assert consent_state([c, d], T0)[Purpose.SMS_MARKETING] is False
    assert consent_state([d, c], T0)[Purpose.SMS_MARKETING] is False


def test_naive_timestamps_from_sqlite_are_read_as_utc():
    naive = Entry("location_offers", True, T0.replace(tzinfo=None))
    assert consent_state([naive], T0)[Purpose.LOCATION_OFFERS] is True
    assert consent_state([naive], T0 - timedelta(seconds=1))[Purpose.LOCATION_OFFERS] is False


def test_unknown_purposes_in_the_ledger_are_ignored():
    assert consent_state([Entry("newsletter", True, T0)], T0) == dict.fromkeys(Purpose, False)


@pytest.mark.parametrize(
    ("granted", "channel", "suppressed", "expected"),
    [
        ({"location_offers", "sms_marketing"}, "sms", False, None),
        ({"location_offers", "sms_marketing"}, "sms", True, "suppressed:sms"),
        ({"sms_marketing"}, "sms", False, "no_consent:location_offers"),
        ({"location_offers"}, "sms", False, "no_consent:sms_marketing"),
        ({"location_offers", "sms_marketing"}, "push", False, "no_consent:push_marketing"),
        ({"location_offers", "push_marketing"}, "push", False, None),
        ({"location_offers", "push_marketing"}, "fax", False, "unknown_channel:fax"),
    ],
)
def test_refusal_reason_names_the_missing_purpose(granted, channel, suppressed, expected):
    state = {p: p.value in granted for p in Purpose}
    assert refusal_reason(state, channel=channel, suppressed=suppressed) == expected


def test_may_contact_needs_location_consent_only_for_location_triggered_messages():
    entries = [Entry("push_marketing", True, T0)]
    assert may_contact(entries, channel="push", at=T0) is False
    assert may_contact(entries, channel="push", at=T0, location_triggered=False) is True
    assert may_contact(entries + [Entry("location_offers", True, T0)], channel="push", at=T0) is True


def test_is_granted_agrees_with_the_full_projection():
    entries = [
        Entry("location_offers", True, T0, recorded_at=T0, seq=1),
        Entry("location_offers", False, T0 + timedelta(hours=1), recorded_at=T0, seq=2),
        Entry("push_marketing", True, T0 + timedelta(hours=2)),
        Entry("location_offers", True, T0 + timedelta(hours=3), recorded_at=T0, seq=3),
    ]
    for minutes in range(-30, 300, 15):
        at = T0 + timedelta(minutes=minutes)
        state = consent_state(entries, at)
        for purpose in Purpose:
            assert is_granted(entries, purpose, at) is state[purpose], (purpose, minutes)
