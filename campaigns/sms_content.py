"""SMS content rules: encoding and segment count, and the legal mentions every marketing SMS carries.

Pure: no I/O. The campaign save path calls :func:`analyse` (to show the cost and warn) and
:func:`append_legal_mentions` (so the stored template already carries the advertiser and the opt-out).

Encoding follows GSM 03.38 (3GPP TS 23.038): the basic table costs one septet per character, the
extension table (``^{}\\[~]|€`` and form feed) costs two (escape + character). Any other character
forces UCS-2, counted in UTF-16 code units (an emoji costs two). A single SMS holds 160 septets or 70
UCS-2 units; a concatenated one loses room to the UDH header: 153 septets or 67 units per segment,
and an escape pair or a surrogate pair is never split across two segments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GSM7 = "GSM-7"
UCS2 = "UCS-2"

# GSM 03.38 basic character set (0x1B, the escape, is not a character one can type).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")

SINGLE_SEGMENT = {GSM7: 160, UCS2: 70}
MULTI_SEGMENT = {GSM7: 153, UCS2: 67}


@dataclass(frozen=True, slots=True)
class SmsAnalysis:
    """``length`` is in encoding units: septets (GSM-7) or UTF-16 code units (UCS-2)."""

    encoding: str
    segments: int
    length: int
    characters: int
    non_gsm: tuple[str, ...] = ()  # the characters that force UCS-2, in order of appearance

    def warning(self, max_segments: int) -> str | None:
        """A human-readable warning when the message costs more than ``max_segments`` segments."""
        if self.segments <= max_segments:
            return None
        why = f" (UCS-2 because of {''.join(self.non_gsm[:10])!r})" if self.non_gsm else ""
        return (
            f"this SMS needs {self.segments} segments{why}; the limit is {max_segments}: "
            "each segment is billed separately"
        )


def _unit_costs(body: str) -> tuple[str, list[int], tuple[str, ...]]:
    non_gsm: list[str] = []
    for ch in body:
        if ch not in GSM7_BASIC and ch not in GSM7_EXTENSION and ch not in non_gsm:
            non_gsm.append(ch)
    if not non_gsm:
        return GSM7, [2 if ch in GSM7_EXTENSION else 1 for ch in body], ()
    return UCS2, [2 if ord(ch) > 0xFFFF else 1 for ch in body], tuple(non_gsm)


def _count_segments(costs: list[int], per_segment: int) -> int:
    """Pack characters into segments without splitting an escape pair or a surrogate pair."""
    segments, used = 1, 0
    for cost in costs:
        if used + cost > per_segment:
            segments, used = segments + 1, 0
        used += cost
    return segments


def analyse(body: str) -> SmsAnalysis:
    """Encoding, segment count and length of ``body`` as a carrier would send it.

    Examples
    --------
    >>> analyse("Hello").segments, analyse("€" * 81).segments, analyse("ç").encoding
    (1, 2, 'UCS-2')
    """
    encoding, costs, non_gsm = _unit_costs(body)
    length = sum(costs)
    if length <= SINGLE_SEGMENT[encoding]:
        segments = 1
    else:
        segments = _count_segments(costs, MULTI_SEGMENT[encoding])
    return SmsAnalysis(encoding, segments, length, len(body), non_gsm)


# --- legal mentions ---------------------------------------------------------------------------

_SHORT_NUMBER = re.compile(r"^\+?\d{3,15}$")

# The opt-out mention per language. FR: CNIL asks for a simple, free way to object in every
# commercial SMS; market practice (and carriers) expect "STOP au <short number>" (AF2M 36xxx plan).
_MENTION_WITH_NUMBER = {"fr": "STOP au {number}"}
_MENTION_WITHOUT_NUMBER = {
    "fr": "Répondez STOP pour vous désabonner",
    "en": "Reply STOP to opt out",
}


def _language(locale: str) -> str:
    language = locale.replace("_", "-").split("-", 1)[0].lower()
    return language if language in _MENTION_WITHOUT_NUMBER else "en"


def opt_out_mention(*, locale: str, sender: str | None) -> str:
    """The opt-out mention for ``locale`` when customers reply to ``sender``.

    A numeric sender (short code or long number) is named in French, where the short number is the
    point of the mention; in English the usual "Reply STOP to opt out" is kept. An alphanumeric
    sender cannot receive a reply, so a marketing SMS from it could not be opted out of.
    """
    language = _language(locale)
    if sender is not None and sender.strip():
        number = sender.strip().replace(" ", "")
        if not _SHORT_NUMBER.match(number):
            raise ValueError(
                f"sender {sender!r} is alphanumeric: customers cannot reply STOP to it; "
                "marketing SMS must come from a number that accepts replies"
            )
        if language in _MENTION_WITH_NUMBER:
            return _MENTION_WITH_NUMBER[language].format(number=number)
    return _MENTION_WITHOUT_NUMBER[language]


def append_legal_mentions(body: str, *, advertiser: str, locale: str, sender: str | None) -> str:
    """Make sure a marketing SMS names the advertiser and ends with the opt-out mention.

    Idempotent: a body that already names the advertiser (case-insensitive) is not prefixed, and a
    body that already carries the mention is not suffixed again, so saving a campaign twice is safe.

    Examples
    --------
    >>> append_legal_mentions("-20% aujourd'hui", advertiser="Boulangerie Paul", locale="fr-FR",
    ...                       sender="36123")
    "Boulangerie Paul: -20% aujourd'hui STOP au 36123"
    """
    advertiser = advertiser.strip()
    if not advertiser:
        raise ValueError("a marketing SMS must name its advertiser")
    text = body.strip()
    mention = opt_out_mention(locale=locale, sender=sender)
    if advertiser.casefold() not in text.casefold():
        text = f"{advertiser}: {text}"
    if mention.casefold() not in " ".join(text.split()).casefold():
        text = f"{text} {mention}"
    return text


@dataclass(frozen=True, slots=True)
class PreparedSms:
    """What a campaign save returns for an SMS template: the final text and what it will cost."""

    text: str
    analysis: SmsAnalysis
    warning: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "text": self.text,
            "encoding": self.analysis.encoding,
            "segments": self.analysis.segments,
            "length": self.analysis.length,
            "non_gsm": list(self.analysis.non_gsm),
            "warning": self.warning,
        }


def prepare_marketing_sms(
    body: str, *, advertiser: str, locale: str, sender: str | None, max_segments: int
) -> PreparedSms:
    """Legal mentions first, then the analysis of the text that will really be sent."""
    text = append_legal_mentions(body, advertiser=advertiser, locale=locale, sender=sender)
    analysis = analyse(text)
    return PreparedSms(text, analysis, analysis.warning(max_segments))
