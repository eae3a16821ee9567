"""The answer of ``POST /v1/locations``: ``render_dicts``'s shortcut for "every fix accepted" gives the
same bytes as encoding the whole document (``render_document``), and everything else goes the long way."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from geofence.events import TransitionKind, ZoneEvent
from geofence.ingest import OK, FixResult
from geofence.ingest.results import DUPLICATE_RESULT, rejected
from geofence.service.ingest_answers import event_dict
from geofence.service.routes.locations import render_dicts, render_document

EVENT = ZoneEvent("e1", "z1", "d1", TransitionKind.ENTER, datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC), "v1",
                  "inside", 48.857, 2.352)

RESULTS = st.lists(
    st.sampled_from([OK, OK, OK, DUPLICATE_RESULT, rejected("recorded_at_too_old"), FixResult("accepted")]),
    max_size=120,
)


@given(results=RESULTS, with_events=st.booleans())
def test_the_answer_is_the_encoded_document_whatever_the_results(
    results: list[FixResult], with_events: bool
) -> None:
    events = [event_dict(EVENT)] if with_events else []
    assert render_dicts(results, events) == render_document(results, events)


def test_every_fix_accepted_is_answered_with_its_count_and_one_result_each() -> None:
    for n in (0, 1, 100, 1000):
        body = render_dicts([OK] * n, [])
        assert body == render_document([OK] * n, [])
        doc = json.loads(body)
        assert (doc["accepted"], doc["duplicates"], doc["rejected"], doc["events"]) == (n, 0, 0, [])
        assert doc["results"] == [{"status": "accepted", "reason": None}] * n
    # equal results that are not the shared ``OK`` (a stored answer read back) answer the same
    assert render_dicts([FixResult("accepted")] * 3, []) == render_document([OK] * 3, [])
    # one rejection among them: counted as such, by the long way
    mixed = [OK, rejected("recorded_at_in_future"), OK]
    assert json.loads(render_dicts(mixed, []))["rejected"] == 1
    assert render_dicts(tuple(mixed), []) == render_document(mixed, [])
