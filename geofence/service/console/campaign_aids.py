"""What the campaign form shows beside its fields, computed by the campaigns package's own code: the
hours the legal table forbids for SMS (the weekly grid) and an SMS's length as it will be sent."""

from __future__ import annotations

from datetime import time
from typing import Any

from campaigns.legal_hours import LegalTable
from campaigns.model import DAY_NAMES
from campaigns.sms_content import analyse, append_legal_mentions, opt_out_mention

ALLOWED, PARTIAL, FORBIDDEN = "allowed", "partial", "forbidden"


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def _open_minutes(table: LegalTable, country: str, day: int) -> set[int]:
    """Minutes of ``day`` (0=Monday) in which the table allows marketing SMS (every minute if no rule)."""
    rule = table.rule("sms", country)
    if rule is None or not rule.spans:
        return set(range(24 * 60))
    minutes: set[int] = set()
    for span in rule.spans:
        start, end = _minutes(span.start), _minutes(span.end)
        if start == end:
            if day in span.days:
                minutes.update(range(24 * 60))
            continue
        if end > start:
            if day in span.days:
                minutes.update(range(start, end))
        else:  # crosses midnight: the evening belongs to the opening day, the morning to the next
            if day in span.days:
                minutes.update(range(start, 24 * 60))
            if (day - 1) % 7 in span.days:
                minutes.update(range(0, end))
    return minutes


def legal_sms_grid(table: LegalTable, country: str) -> list[dict[str, Any]]:
    """Per weekday, per hour: allowed, partial (part of the hour is forbidden) or forbidden for SMS.

    Public holidays close whole days in some countries; the grid is weekly and says so in ``note``.
    """
    rule = table.rule("sms", country)
    rows = []
    for day, name in enumerate(DAY_NAMES):
        open_minutes = _open_minutes(table, country, day)
        hours = []
        for hour in range(24):
            n = len(open_minutes & set(range(hour * 60, hour * 60 + 60)))
            hours.append(ALLOWED if n == 60 else FORBIDDEN if n == 0 else PARTIAL)
        rows.append({"day": name, "hours": hours})
    return [{"country": country, "closed_on_public_holidays": bool(rule and rule.closed_on_public_holidays),
             "source": rule.source if rule else ""}, *rows]


def sms_preview(body: str, *, locale: str, advertiser: str | None, sender: str | None) -> dict[str, Any]:
    """The SMS as it will leave (advertiser named, opt-out mention appended), its encoding and segments."""
    try:
        mention = opt_out_mention(locale=locale, sender=sender or None)
        text = append_legal_mentions(body, advertiser=advertiser or "", locale=locale, sender=sender or None)
        problem = None
    except ValueError as exc:
        mention, text, problem = "", body.strip(), str(exc)
    result = analyse(text)
    return {
        "text": text, "mention": mention, "encoding": result.encoding, "segments": result.segments,
        "length": result.length, "characters": result.characters, "non_gsm": list(result.non_gsm),
        "problem": problem,
    }
