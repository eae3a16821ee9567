"""SMS keywords: every default keyword in any case/accent/punctuation, the fuzzy opt-out rule, and
words that must never match."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.keywords import (
    DEFAULT_HELP,
    DEFAULT_OPT_IN,
    DEFAULT_OPT_OUT,
    Intent,
    KeywordConfig,
    match,
    normalise,
    words,
)

REQUIRED_OPT_OUT = ["STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT",
                    "OPT OUT", "OPT-OUT", "REMOVE", "ARRET", "ARRÊT", "ARRETE", "DESABONNER", "DÉSABONNER",
                    "DESINSCRIRE", "STOP SMS"]  # fmt: skip
REQUIRED_OPT_IN = ["START", "YES", "UNSTOP", "SUBSCRIBE", "OUI", "REPRENDRE"]
REQUIRED_HELP = ["HELP", "INFO", "AIDE"]


def _variants(keyword: str) -> list[str]:
    return [keyword, keyword.lower(), keyword.title(), f"  {keyword}  ", f"{keyword}!", f"\"{keyword}.\"",
            f"\n{keyword}?!\t", f"{keyword} 🙏", f"«{keyword}»"]  # fmt: skip


def test_defaults_cover_the_required_lists():
    assert set(REQUIRED_OPT_OUT) <= set(DEFAULT_OPT_OUT)
    assert set(REQUIRED_OPT_IN) <= set(DEFAULT_OPT_IN)
    assert set(REQUIRED_HELP) <= set(DEFAULT_HELP)


@pytest.mark.parametrize(
    ("keyword", "intent"),
    [(k, Intent.OPT_OUT) for k in REQUIRED_OPT_OUT]
    + [(k, Intent.OPT_IN) for k in REQUIRED_OPT_IN]
    + [(k, Intent.HELP) for k in REQUIRED_HELP],
)
def test_every_keyword_matches_exactly_in_any_case_and_punctuation(keyword, intent):
    for body in _variants(keyword):
        found = match(body)
        assert found.intent is intent, body
        assert not found.fuzzy and not found.needs_review, body


@pytest.mark.parametrize(
    "body", ["arrêt", "ARRÊT", "Arrêt", "arrét", "ärret", "désabonner", "DÉSABONNER", "Désinscrire", "ÂRRÊTE"]
)
def test_accents_are_ignored(body):
    assert match(body).intent is Intent.OPT_OUT


@pytest.mark.parametrize("body", ["Aidé", "ÍNFO", "oui", "OUÍ", "Reprendre."])
def test_accents_ignored_for_help_and_opt_in_too(body):
    assert match(body).intent in (Intent.HELP, Intent.OPT_IN)


@pytest.mark.parametrize(
    "body",
    ["stopwatch", "unstoppable", "nonstop", "STOP2", "stopping", "Stopped", "endless", "quite", "cancelled",
     "removed", "information", "helpful", "yesterday", "starting", "opt", "out", "",
     "   ", "!!!", "🙂", "Thanks, see you at the store"],
)  # fmt: skip
def test_words_that_only_contain_a_keyword_never_match(body):
    found = match(body)
    assert found.intent is Intent.NONE
    assert found.needs_review is False


@pytest.mark.parametrize(
    ("body", "keyword"),
    [("stop merci", "stop"), ("Please stop", "stop"), ("STOP!!! please", "stop"),
     ("stop, merci beaucoup", "stop"), ("opt out please", "opt out"), ("please opt-out me", "opt out"),
     ("arrêt svp", "arret"), ("je veux me desabonner", "desabonner"), ("stop sms merci", "stop sms"),
     ("unsubscribe me now please", "unsubscribe"), ("stop yes", "stop"), ("help stop", "stop"),
     ("don't stop", "stop"), ("stop_now", "stop"), ("arreter-vous", "arreter")],
)  # fmt: skip
def test_short_body_with_an_opt_out_word_is_an_opt_out_flagged_for_review(body, keyword):
    found = match(body)
    assert found.intent is Intent.OPT_OUT
    assert found.fuzzy and found.needs_review
    assert found.keyword == keyword


def test_fuzzy_rule_allows_three_other_words_not_four():
    assert match("please please please stop").intent is Intent.OPT_OUT
    long_text = match("please please please please stop")
    assert long_text.intent is Intent.NONE
    assert long_text.needs_review  # stored for a human, not acted on


@pytest.mark.parametrize("body", ["yes please", "start now", "help me", "info svp", "oui merci"])
def test_opt_in_and_help_are_never_fuzzy(body):
    assert match(body).intent is Intent.NONE


def test_lists_are_configuration():
    config = KeywordConfig(opt_out=("BASTA",), opt_in=("VAMOS",), help=("SOS",), max_other_words=0)
    assert match("basta!", config).intent is Intent.OPT_OUT
    assert match("STOP", config).intent is Intent.NONE
    assert match("vamos", config).intent is Intent.OPT_IN
    assert match("sos", config).intent is Intent.HELP
    assert match("basta please", config).intent is Intent.NONE  # no other word allowed


def test_a_word_in_two_lists_resolves_to_opt_out():
    config = KeywordConfig(opt_out=("STOP", "END"), opt_in=("END",), help=())
    assert match("end", config).intent is Intent.OPT_OUT


# --- properties ----------------------------------------------------------------------------------

bodies = st.text(max_size=200)


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_match_never_crashes_and_normalise_is_idempotent(body):
    found = match(body)
    assert found.intent in set(Intent)
    once = normalise(body)
    assert normalise(once) == once
    assert once == once.strip()
    assert "  " not in once


letters = st.text(alphabet=string.ascii_letters + "éèàÉ", min_size=1, max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DEFAULT_OPT_OUT + DEFAULT_OPT_IN + DEFAULT_HELP), letters, st.booleans())
def test_a_keyword_glued_inside_a_longer_word_never_matches(keyword, extra, before):
    glued = (extra + keyword.replace(" ", "").replace("-", "")) if before else (keyword + extra)
    if " " in keyword or "-" in keyword:
        glued = glued if before else keyword.replace(" ", "").replace("-", "") + extra
    if normalise(glued) in {normalise(k) for k in DEFAULT_OPT_OUT + DEFAULT_OPT_IN + DEFAULT_HELP}:
        return  # the glued form happens to be another keyword ("UN"+"STOP", "STOP"+"ALL")
    found = match(glued)
    assert found.intent is Intent.NONE, glued


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(DEFAULT_OPT_OUT),
    st.lists(st.sampled_from(["merci", "please", "svp", "now"]), max_size=3),
    st.integers(min_value=0, max_value=3),
)
def test_an_opt_out_word_among_up_to_three_others_always_opts_out(keyword, others, position):
    tokens = list(others)
    tokens.insert(min(position, len(tokens)), keyword)
    assert match(" ".join(tokens)).intent is Intent.OPT_OUT


def test_words_split_on_punctuation_and_keep_digits():
    assert words(normalise("Stop, merci!! 2x")) == ["stop", "merci", "2x"]


# --- stop requests in plain words (campaigns.stop_phrases) --------------------------------------


@pytest.mark.parametrize(
    ("body", "phrase"),
    [("Please don't text me again", "dont_text_me"), ("Do not send me any more messages", "dont_send_me"),
     ("No more texts!", "no_more_texts"), ("Remove me from your list", "remove_me"),
     ("Désabonnez-moi svp", "desabonnez_moi"),
     ("Je ne veux plus recevoir vos offres", "ne_veux_plus_recevoir"),
     ("Arrêtez de m'envoyer des pubs", "arretez_de_m_envoyer"),
     ("Ne m’envoyez plus rien", "ne_m_envoyez_plus"),
     ("merci de ne plus m'envoyer de sms", "ne_plus_m_envoyer"),
     ("Retirez mon numéro de votre liste", "retirez_moi_de_la_liste"),
     ("I don't want your texts", "i_dont_want"),
     ("Hello, please stop texting me, I never signed up for any of this", "stop_texting_me")],
)  # fmt: skip
def test_sure_stop_phrasings_opt_out_at_once_without_a_keyword(body, phrase):
    found = match(body)
    assert found.intent is Intent.OPT_OUT
    assert found.keyword == f"phrase:{phrase}"
    assert not found.needs_review


@pytest.mark.parametrize(
    ("body", "phrase"),
    [("Laissez-moi tranquille", "leave_me_alone"), ("Plus de SMS svp", "plus_de"),
     ("Arrêtez !", "arretez"),
     ("j'en ai marre de vos messages", "enough"), ("How did you get my number?", "how_my_number"),
     ("Ça ne m'intéresse pas", "not_interested"), ("c'est du spam", "spam"),
     ("wrong number", "wrong_number")],
)  # fmt: skip
def test_plain_but_unsure_stop_requests_go_to_review_and_change_nothing(body, phrase):
    found = match(body)
    assert found.intent is Intent.NONE
    assert found.needs_review and found.keyword == f"phrase:{phrase}"


@pytest.mark.parametrize("body", ["Merci, à demain", "see you at the shop", "plus de croissants demain ?",
                                  "send me more offers", "I love your texts"])
def test_ordinary_replies_are_not_stop_requests(body):
    found = match(body)
    assert found.intent is Intent.NONE and not found.needs_review
