"""Transactional messages (an order is ready): when they may go, and what they say.

They are not marketing: no marketing consent, caps, quiet hours or legal marketing-SMS hours apply
(they answer something the customer asked for). One rule of their own: never in the dead of night in
the customer's time zone (``NIGHT``, 22:00-07:00) — a notice that falls then waits for 07:00 — unless
the customer asked to be told at any hour. The consent purpose ``order_updates`` (``Purpose``) gates
them, and an SMS still never goes to a number that texted STOP (the suppression list).
"""

from __future__ import annotations

from datetime import datetime, time

from campaigns.windows import next_common_opening, quiet_period

NIGHT = (time(22, 0), time(7, 0))
# idempotency keys of transactional deliveries start with this: marketing caps do not count them, and a
# withdrawn marketing consent does not cancel them (one portable LIKE, no JSON query)
KEY_PREFIX = "txn:"  # local wall-clock: held from 22:00, sent from 07:00

READY_TEXT = {
    "fr": ("Votre commande est prête", "Votre commande {order} vous attend à {store}."),
    "en": ("Your order is ready", "Your order {order} is ready for pickup at {store}."),
}


def transactional_send_at(at: datetime, tz_name: str, *, any_hour: bool = False) -> datetime:
    """The earliest instant ``>= at`` a transactional notice may go to a customer in ``tz_name``.

    Parameters
    ----------
    at : when the notice becomes due (tz-aware).
    tz_name : the customer's IANA zone (else the store's).
    any_hour : the customer asked to be told at any hour: ``at`` itself.

    Example
    -------
    A notice due at 23:10 in Paris goes at 07:00 the next morning (local).
    """
    if any_hour:
        return at
    night = quiet_period("transactional_night", tz_name, *NIGHT)
    opening = next_common_opening([night], at)
    return at if opening is None else opening


def ready_text(locale: str | None, *, order_ref: str, store_name: str) -> tuple[str, str]:
    """(title, body) of the "ready for pickup at <store>" notice in the customer's language."""
    title, body = READY_TEXT.get((locale or "en")[:2].lower(), READY_TEXT["en"])
    return title, body.format(order=order_ref, store=store_name)
