"""SMS keywords: normalise an inbound body and say whether it opts out, opts in or asks for help.

Pure (no I/O). The lists are configuration (``KeywordConfig``); the defaults are a superset of
Twilio's, CTIA's, the FCC's seven revocation words and Canada's bilingual list, plus French words.

Matching rules, in order
------------------------
1. **Exact**: the whole normalised body equals a keyword (``"STOP"``, ``" Stop! "``, ``"arrêt."``,
   ``"Opt-Out"``). This is what carriers do.
2. **Fuzzy opt-out** (FCC 24-18: revocation "in any reasonable manner"): the body's words contain an
   opt-out keyword as whole words (``"stop merci"``, ``"please stop"``, ``"opt out please"``) and at
   most ``max_other_words`` (default 3) other words. The result is an opt-out *flagged for review*.

Choices of the fuzzy rule (why)
-------------------------------
- Whole words only: a word is a run of letters/digits, so ``"stopwatch"``, ``"unstoppable"``,
  ``"stop2"`` and ``"nonstop"`` never match; ``"stop!!!"`` and ``"stop, merci"`` do.
- Opt-out always wins: a body holding both an opt-out and an opt-in or help word (``"stop yes"``) is an
  opt-out. A wrong opt-out costs one START; a missed one breaks the law.
- No negation parsing (``"don't stop"`` is an opt-out for review): same asymmetry, and the review
  queue is where a human sees it.
- Opt-in and help are never fuzzy: consent must be unambiguous (``"yes please"`` grants nothing) and a
  wrong help reply is noise.
- A body with an opt-out word but more than ``max_other_words`` other words is not acted on; it is
  returned as ``NONE`` with ``needs_review`` so a human can read it.

3. **Stop phrases** without a keyword, or with one in a long text (``campaigns.stop_phrases``): a sure
   phrasing (``"ne m'envoyez plus"``, ``"remove me from your list"``) is an opt-out at once (keyword
   ``phrase:<name>``); a plain but unsure one (``"laissez-moi tranquille"``) is ``NONE`` with
   ``needs_review``: the review queue, consent untouched until a person decides.

Normalisation: case-fold, NFKD with combining marks removed (``"ARRÊT"`` → ``"arret"``), surrounding
punctuation, symbols (emoji included), separators and control characters trimmed, inner whitespace
collapsed to one space. It is idempotent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from campaigns.stop_phrases import find_stop_phrase


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    NONE = "none"


DEFAULT_OPT_OUT: tuple[str, ...] = (
    "STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "UNSUB", "CANCEL", "END", "QUIT", "REVOKE",
    "OPTOUT", "OPT OUT", "OPT-OUT", "REMOVE",
    "ARRET", "ARRÊT", "ARRETE", "ARRETER", "DESABONNER", "DÉSABONNER", "DESINSCRIRE", "STOP SMS",
)  # fmt: skip
DEFAULT_OPT_IN: tuple[str, ...] = ("START", "YES", "UNSTOP", "SUBSCRIBE", "OUI", "REPRENDRE")
DEFAULT_HELP: tuple[str, ...] = ("HELP", "INFO", "AIDE")
DEFAULT_MAX_OTHER_WORDS = 3

_WORD = re.compile(r"[^\W_]+")  # letters and digits; underscore and punctuation separate words
_WS = re.compile(r"\s+")


def _is_edge_noise(char: str) -> bool:
    # P* punctuation, S* symbols (emoji), Z* separators, C* control/format; plus any whitespace.
    return char.isspace() or unicodedata.category(char)[0] in "PSZC"


def normalise(body: str) -> str:
    """Case-fold, strip accents, trim surrounding punctuation/whitespace, collapse inner whitespace.

    Example
    -------
    >>> normalise("  Arrêt !! ")
    'arret'
    """
    text = unicodedata.normalize("NFKD", body.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    # Case-folding the decomposed text again catches the few letters whose fold only exists composed.
    text = unicodedata.normalize("NFKD", text.casefold())
    text = "".join(c for c in text if not unicodedata.combining(c))
    start, end = 0, len(text)
    while start < end and _is_edge_noise(text[start]):
        start += 1
    while end > start and _is_edge_noise(text[end - 1]):
        end -= 1
    return _WS.sub(" ", text[start:end])


def words(normalised: str) -> list[str]:
    """The words of a normalised body (runs of letters/digits)."""
    return _WORD.findall(normalised)


@dataclass(frozen=True)
class KeywordConfig:
    """Keyword lists (any case/accents; normalised on build) and the fuzzy rule's word budget."""

    opt_out: Sequence[str] = DEFAULT_OPT_OUT
    opt_in: Sequence[str] = DEFAULT_OPT_IN
    help: Sequence[str] = DEFAULT_HELP
    max_other_words: int = DEFAULT_MAX_OTHER_WORDS
    _exact: dict[str, Intent] = field(init=False, repr=False, compare=False)
    _phrases: tuple[tuple[str, ...], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact: dict[str, Intent] = {}
        # Opt-out is registered last so that it wins if a word is configured in two lists.
        for intent, keywords in ((Intent.HELP, self.help), (Intent.OPT_IN, self.opt_in),
                                 (Intent.OPT_OUT, self.opt_out)):  # fmt: skip
            for keyword in keywords:
                key = normalise(keyword)
                if key:
                    exact[key] = intent
        phrases = {tuple(words(normalise(k))) for k in self.opt_out}
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_phrases", tuple(sorted(p for p in phrases if p)))


DEFAULT_CONFIG = KeywordConfig()


@dataclass(frozen=True)
class KeywordMatch:
    intent: Intent
    keyword: str | None = None  # the normalised keyword that matched
    fuzzy: bool = False  # matched by the fuzzy rule, not the whole body
    needs_review: bool = False  # store the body for a human to read

    @property
    def is_opt_out(self) -> bool:
        return self.intent is Intent.OPT_OUT


def _find_phrase(tokens: Sequence[str], phrases: Iterable[tuple[str, ...]]) -> tuple[str, ...] | None:
    best: tuple[str, ...] | None = None
    for phrase in phrases:
        n = len(phrase)
        if any(tuple(tokens[i : i + n]) == phrase for i in range(len(tokens) - n + 1)):
            if best is None or len(phrase) > len(best):
                best = phrase  # the longest phrase leaves the fewest "other" words
    return best


def match(body: str, config: KeywordConfig = DEFAULT_CONFIG) -> KeywordMatch:
    """Classify an inbound SMS body (see the module docstring for the rules).

    Example
    -------
    >>> match("Stop merci").intent, match("Stop merci").needs_review
    (<Intent.OPT_OUT: 'opt_out'>, True)
    >>> match("stopwatch").intent
    <Intent.NONE: 'none'>
    """
    text = normalise(body)
    if not text:
        return KeywordMatch(Intent.NONE)
    exact = config._exact.get(text)
    if exact is not None:
        return KeywordMatch(exact, keyword=text)
    tokens = words(text)
    phrase = _find_phrase(tokens, config._phrases)
    if phrase is not None and len(tokens) - len(phrase) <= config.max_other_words:
        return KeywordMatch(Intent.OPT_OUT, keyword=" ".join(phrase), fuzzy=True, needs_review=True)
    stop = find_stop_phrase(text)
    if stop is not None and stop.sure:
        return KeywordMatch(Intent.OPT_OUT, keyword=f"phrase:{stop.name}", fuzzy=True)
    if phrase is not None:
        return KeywordMatch(Intent.NONE, keyword=" ".join(phrase), fuzzy=True, needs_review=True)
    if stop is not None:  # a plain request to stop: a person decides, consent untouched until then
        return KeywordMatch(Intent.NONE, keyword=f"phrase:{stop.name}", fuzzy=True, needs_review=True)
    return KeywordMatch(Intent.NONE)
