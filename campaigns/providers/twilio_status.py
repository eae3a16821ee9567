"""Twilio's message statuses as ours: the callback's path and how a callback moves a delivery.

Apart from the provider (``twilio_sms``) because the API serves the status callback in every process and
needs only this, not the SDK and its HTTP stack (~0.1 s of every start-up on the default outbox channel).
"""

from __future__ import annotations

STATUS_CALLBACK_PATH = "/v1/deliveries/twilio/status"

# Twilio MessageStatus -> our delivery status (tables/campaigns.py constants, by value).
TWILIO_STATUS = {
    "accepted": "queued",
    "scheduled": "queued",
    "queued": "queued",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "cancelled",
}
# How far along a delivery is; a callback never moves a row to a lower rank (callbacks can arrive
# out of order, and "delivered" is the strongest fact we can learn).
_RANK = {"queued": 1, "sent": 2, "undelivered": 3, "failed": 3, "cancelled": 3, "delivered": 4}


def next_status(current: str, reported: str) -> str | None:
    """The delivery's new status after a Twilio callback reporting ``reported``, or None to ignore.

    Examples
    --------
    >>> next_status("sent", "delivered"), next_status("delivered", "failed"), next_status("sending", "sent")
    ('delivered', None, 'sent')
    """
    mapped = TWILIO_STATUS.get(reported.lower())
    if mapped is None:
        return None
    if _RANK[mapped] > _RANK.get(current, 0):
        return mapped
    return None
