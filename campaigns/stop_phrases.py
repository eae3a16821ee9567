"""Replies that ask to stop in plain words, without a keyword (pure).

Carriers act only on keywords, but a person who writes "ne m'envoyez plus de SMS" has withdrawn consent
(FCC 24-18: revocation "in any reasonable manner"; CNIL: withdrawal as easy as consent). Two tiers:

- **sure** phrasings opt out at once, like a keyword: a first-person request that names the sending
  or the list (``"don't text me"``, ``"remove me from your list"``, ``"ne m'envoyez plus"``,
  ``"je ne veux plus recevoir"``, ``"désabonnez-moi"``). Misreading one costs a START;
- **plain** requests that are not sure (``"leave me alone"``, ``"plus de SMS"`` — French for both
  "no more" and "more" —, ``"arrêtez"``, ``"how did you get my number"``, ``"spam"``) go to the review
  queue; consent is untouched until a person decides (opt out, or dismiss).

Phrases are matched on the keyword normaliser's output (case-folded, accents stripped) as whole
words with flexible spacing and apostrophes (``"don't"``, ``"dont"``, ``"do not"``). The full lists are
``SURE`` and ``PLAIN`` below, documented in docs/consent.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# "m'", "m ", "me " (French object pronoun) and "don't" / "dont" / "do not" spelled any way.
_ME = r"(?:m\s*'?\s*|me\s+)"
_DONT = r"(?:don\s*'?\s*t|do\s+not|dont)"
_MSG = r"(?:messages?|msgs?|textos?|texts?|sms|notifications?|offres?|offers?|promos?|pubs?)"

SURE: dict[str, str] = {
    # English
    "stop_texting_me": r"stop (?:texting|messaging|sending|contacting) me",
    "dont_text_me": rf"{_DONT} (?:text|message|contact|sms) me",
    "dont_send_me": rf"{_DONT} send me (?:any )?(?:more |other )?{_MSG}",
    "no_more_texts": rf"no more {_MSG}",
    "remove_me": r"(?:remove|take) me (?:off|from) (?:your|the|this) (?:list|mailing list|sms list)",
    "unsubscribe_me": r"(?:unsubscribe|opt) me(?: out)?",
    "i_dont_want": rf"i {_DONT} want (?:any )?(?:more |your )?{_MSG}",
    # French
    "ne_m_envoyez_plus": rf"ne {_ME}(?:envoyez|envoie|envoyer|ecrivez|contactez|sollicitez) plus",
    "ne_plus_m_envoyer": rf"ne plus {_ME}(?:envoyer|ecrire|contacter|solliciter)",
    "ne_veux_plus_recevoir": (
        r"(?:je )?ne (?:veux|souhaite|desire) plus (?:recevoir|etre (?:contacte|sollicite))"
    ),
    "arretez_de_m_envoyer": rf"(?:arretez|arrete|cessez) de {_ME}(?:envoyer|ecrire|contacter|spammer)",
    "desabonnez_moi": r"(?:desabonnez|desinscrivez|retirez|supprimez|enlevez) moi",
    "retirez_moi_de_la_liste": (
        r"(?:retirez|supprimez|enlevez) (?:moi|mon numero) de (?:votre|la|vos) (?:liste|fichier)s?"
    ),
}

PLAIN: dict[str, str] = {
    "leave_me_alone": r"leave me alone|laissez moi tranquille|fichez moi la paix|foutez moi la paix",
    "plus_de": rf"plus de {_MSG}",
    "arretez": r"arretez|cessez",
    "not_interested": rf"not interested|pas interesse(?:e)?s?|ca ne {_ME}interesse pas",
    "how_my_number": r"how did you get my number|comment avez vous (?:eu|obtenu) mon numero",
    "spam": r"spam|harcelement|harassment",
    "enough": r"j\s*'?\s*en ai marre|ras le bol|enough is enough|too many (?:messages|texts)",
    "wrong_number": r"wrong number|mauvais numero|pas le bon numero",
}


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![^\W_])(?:{pattern})(?![^\W_])")


_SURE = {name: _compile(p) for name, p in SURE.items()}
_PLAIN = {name: _compile(p) for name, p in PLAIN.items()}
_PUNCT = re.compile(r"[^\w']+")


@dataclass(frozen=True)
class StopPhrase:
    name: str
    sure: bool


def find_stop_phrase(normalised: str) -> StopPhrase | None:
    """The stop request in a normalised body (``campaigns.keywords.normalise``), sure ones first.

    Examples
    --------
    >>> find_stop_phrase("merci de ne plus m'envoyer de sms")
    StopPhrase(name='ne_plus_m_envoyer', sure=True)
    >>> find_stop_phrase("plus de sms svp")  # "no more" or "more"? a person reads it
    StopPhrase(name='plus_de', sure=False)
    """
    text = " ".join(_PUNCT.sub(" ", normalised.replace("’", "'")).split())
    for name, pattern in _SURE.items():
        if pattern.search(text):
            return StopPhrase(name, sure=True)
    for name, pattern in _PLAIN.items():
        if pattern.search(text):
            return StopPhrase(name, sure=False)
    return None
