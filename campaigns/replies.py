"""Replies to SMS keywords, per locale: a confirmation only, never marketing (FCC 24-18, CTIA).

Kept short (one GSM-7 segment where possible) and free of offers, links and first names. English is the
fallback for any locale we do not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class ReplyKind(StrEnum):
    STOPPED = "stopped"  # after an opt-out
    STARTED = "started"  # after an opt-in
    START_REFUSED = "start_refused"  # opt-in from a number erased at its owner's request
    HELP = "help"


REPLIES: Mapping[str, Mapping[ReplyKind, str]] = {
    "en": {
        ReplyKind.STOPPED: (
            "You are unsubscribed and will receive no more marketing texts. Reply "
            "START to resubscribe."
        ),
        ReplyKind.STARTED: "You are subscribed again to our texts. Reply STOP to unsubscribe, HELP for help.",
        ReplyKind.START_REFUSED: (
            "This number was removed at your request. Please sign up again in the "
            "app or in store."
        ),
        ReplyKind.HELP: (
            "Store offers by text. Reply STOP to unsubscribe, START to "
            "resubscribe. Msg&data rates may apply."
        ),
    },
    "fr": {
        ReplyKind.STOPPED: (
            "Vous êtes désinscrit et ne recevrez plus de SMS promotionnels. "
            "Répondez START pour vous réinscrire."
        ),
        ReplyKind.STARTED: (
            "Vous êtes de nouveau inscrit à nos SMS. Répondez STOP pour vous "
            "désinscrire, AIDE pour de l'aide."
        ),
        ReplyKind.START_REFUSED: (
            "Ce numéro a été effacé à votre demande. Réinscrivez-vous dans "
            "l'application ou en magasin."
        ),
        ReplyKind.HELP: (
            "Offres de nos magasins par SMS. Répondez STOP pour vous désinscrire, "
            "START pour vous réinscrire."
        ),
    },
}  # fmt: skip

DEFAULT_LOCALE = "en"


def language_of(locale: str | None) -> str:
    """``"fr-FR"``/``"fr_CA"`` → ``"fr"``; unknown or empty → the default."""
    lang = (locale or "").replace("_", "-").split("-", 1)[0].lower()
    return lang if lang in REPLIES else DEFAULT_LOCALE


def reply_text(kind: ReplyKind, locale: str | None) -> str:
    return REPLIES[language_of(locale)][kind]
