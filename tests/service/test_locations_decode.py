"""The location feed's decoder: any bytes give fixes + per-fix reasons, or a 413/422; nothing else."""

from __future__ import annotations

import json

from fastapi import HTTPException
from hypothesis import given, settings
from hypothesis import strategies as st

from geofence.service.routes.locations import decode_fixes

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=6),
    max_leaves=20,
)
finite = st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither
fix_like = st.fixed_dictionaries(
    {"device_id": st.text(max_size=5), "lat": finite | st.text(max_size=3),
     "lng": finite, "accuracy_m": finite | st.integers(), "recorded_at": st.text(max_size=30)}
)


def _decode(raw: bytes):
    try:
        return decode_fixes(raw, max_batch=50)
    except HTTPException as exc:
        assert exc.status_code in (413, 422)
        assert exc.detail
        return None


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_but_4xx(raw):
    _decode(raw)


@settings(max_examples=60, deadline=None)
@given(json_values)
def test_arbitrary_json_never_raises_anything_but_4xx(doc):
    _decode(json.dumps(doc).encode())


@settings(max_examples=60, deadline=None)
@given(st.lists(fix_like, max_size=10))
def test_every_fix_of_a_batch_gets_a_fix_or_a_reason(items):
    out = _decode(json.dumps({"fixes": items}).encode())
    assert out is not None
    fixes, bad = out
    assert len(fixes) == len(items)
    assert all(0 <= i < len(items) for i in bad)


def test_a_clean_batch_takes_the_fast_path():
    fix = {"device_id": "d", "lat": 1.5, "lng": 2, "accuracy_m": 5,
           "recorded_at": "2026-01-01T00:00:00+01:00", "speed_mps": 1.0, "client_fix_id": "x"}
    fixes, bad = decode_fixes(json.dumps({"fixes": [fix, fix]}).encode(), max_batch=10)
    assert bad == {} and fixes[0].lng == 2.0 and fixes[0].recorded_at.utcoffset().total_seconds() == 3600
    single, bad = decode_fixes(json.dumps(fix).encode(), max_batch=10)
    assert bad == {} and len(single) == 1
