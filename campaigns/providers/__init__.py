"""Provider registry: a name in ``settings.channels`` -> a factory ``(settings) -> providers``.

``build_providers(settings)`` returns ``{"push": provider, "sms": provider}`` for the channels the
configured providers serve; the first name listed wins a channel. Examples:

- ``["outbox"]`` (the default): the local outbox serves both channels, no credentials needed;
- ``["fcm", "twilio"]``: production; ``["fcm", "outbox"]``: real push, SMS kept local.

A channel no configured provider serves is absent from the dict: the dispatcher must fail those
deliveries with a reason rather than silently print them. SDK modules are imported only when their
provider is configured, so the default never imports firebase-admin or twilio.

Providers are synchronous (the SDKs are): call them from the dispatcher's scheduler threads, never
from an ``async def`` route.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from campaigns.ports import Clock
from campaigns.providers.base import (
    Channel,
    NotificationProvider,
    OutboundMessage,
    ProviderError,
    SendResult,
)


def make_outbox(settings: Any, *, now: Clock, **_deps: Any) -> list[NotificationProvider]:
    from campaigns.providers.outbox_channel import OutboxProvider

    return [OutboxProvider(channel, outbox_dir=settings.outbox_dir, clock=now) for channel in Channel]


def make_fcm(settings: Any, *, now: Clock, **_deps: Any) -> list[NotificationProvider]:
    from campaigns.providers.fcm import FcmProvider

    return [FcmProvider.from_settings(settings, clock=now)]


def make_twilio(settings: Any, *, now: Clock, **_deps: Any) -> list[NotificationProvider]:
    from campaigns.providers.twilio_sms import TwilioSmsProvider

    return [TwilioSmsProvider.from_settings(settings, clock=now)]


FACTORIES: dict[str, Callable[..., list[NotificationProvider]]] = {
    "outbox": make_outbox,
    "fcm": make_fcm,
    "twilio": make_twilio,
}


def build_providers(settings: Any, *, now: Clock, **deps: Any) -> dict[str, NotificationProvider]:
    """One provider per channel name ("push", "sms") from ``settings.channels``; ``now`` is their clock."""
    unknown = [name for name in settings.channels if name not in FACTORIES]
    if unknown:
        raise ValueError(f"unknown channel provider(s) {unknown}; known: {sorted(FACTORIES)}")
    providers: dict[str, NotificationProvider] = {}
    for name in settings.channels:
        for provider in FACTORIES[name](settings, now=now, **deps):
            providers.setdefault(Channel(provider.channel).value, provider)
    check_budgets(providers, lease_s=settings.scheduler.lease_s)
    return providers


def check_budgets(providers: dict[str, NotificationProvider], *, lease_s: float) -> None:
    """A provider whose one send may outlast the dispatcher's lease would never be given a row (see
    ``NotificationProvider``): refuse the configuration at start-up, naming both settings."""
    for provider in {id(p): p for p in providers.values()}.values():
        budget = getattr(provider, "send_budget_s", 0.0)
        if budget >= lease_s:
            close_providers(providers)
            raise ValueError(
                f"the {provider.name} provider may take up to {budget:g} s for one send (its timeout_s and"
                f" retries), not less than the dispatcher's lease (GEOFENCE_SCHEDULER__LEASE_S={lease_s:g}):"
                " lower the timeout or lengthen the lease"
            )


def send_batch(
    provider: NotificationProvider, msgs: Sequence[OutboundMessage]
) -> list[SendResult | ProviderError]:
    """Send many messages: the provider's own burst API when it has one (FCM ``send_each``)."""
    batch = getattr(provider, "send_batch", None)
    if batch is not None:
        return list(batch(msgs))
    results: list[SendResult | ProviderError] = []
    for msg in msgs:
        try:
            results.append(provider.send(msg))
        except ProviderError as exc:
            results.append(exc)
    return results


def close_providers(providers: dict[str, NotificationProvider]) -> None:
    """Release SDK resources (the FCM app) once, even when one provider serves several channels."""
    for provider in {id(p): p for p in providers.values()}.values():
        close = getattr(provider, "close", None)
        if close is not None:
            close()


__all__ = ["FACTORIES", "build_providers", "close_providers", "send_batch"]
