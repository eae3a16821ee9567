"""When a failed webhook delivery is tried again: Svix's schedule with jitter, and the receiver's
``Retry-After`` (seconds or an HTTP date), capped at a day."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

# after the first attempt: Svix's schedule, then every 10 h until ``webhooks.MAX_AGE`` (3 days, ~13 attempts)
SCHEDULE = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
)
MAX_RETRY_AFTER = timedelta(days=1)
JITTER = 0.2  # +-20 %: receivers coming back are not hit by every sender at the same second


def backoff(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """Wait after the ``attempts``-th failed attempt (1 = the first), with jitter."""
    base = SCHEDULE[min(attempts, len(SCHEDULE)) - 1]
    return base * (1 + JITTER * (2 * rng() - 1))


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """``Retry-After`` as seconds or an HTTP date; capped at a day; None when absent or unreadable."""
    if not value:
        return None
    try:
        wait = timedelta(seconds=max(0, int(value.strip())))
    except ValueError:
        try:
            wait = parsedate_to_datetime(value) - now
        except (TypeError, ValueError):
            return None
    return max(timedelta(0), min(wait, MAX_RETRY_AFTER))
