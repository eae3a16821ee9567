"""Holdout assignment: which qualifying customers a campaign holds back to measure its uplift.

Pure and deterministic: the same (campaign, customer) pair always lands on the same side, on every
process and every run, so a customer held back once stays held back (no re-rolling on each trigger),
and the split can be recomputed later for an audit.
"""

from __future__ import annotations

import hashlib

_SCALE = float(1 << 64)


def holdout_bucket(campaign_id: str, customer_id: str) -> float:
    """A uniform number in [0, 1) derived from the pair (first 64 bits of SHA-256).

    The separator keeps ("ab", "c") and ("a", "bc") apart. SHA-256 rather than ``hash()``: Python's
    string hash is salted per process.
    """
    digest = hashlib.sha256(f"{campaign_id}\x1f{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def in_holdout(campaign_id: str, customer_id: str, share: float) -> bool:
    """True when this customer belongs to the campaign's holdout group.

    Parameters
    ----------
    campaign_id, customer_id
        Stable identifiers (our ids, not CRM ids, which may change on re-import).
    share
        Fraction of qualifying customers held back, in [0, 1]. 0 (the default of a campaign) holds
        nobody back; 1 holds everybody back. Values outside the range are clamped.

    Example
    -------
    >>> in_holdout("c1", "u1", 0.0), in_holdout("c1", "u1", 1.0)
    (False, True)
    """
    if share <= 0:
        return False
    if share >= 1:
        return True
    return holdout_bucket(campaign_id, customer_id) < share
