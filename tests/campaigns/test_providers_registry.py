"""The provider registry and the default outbox channel (no network, no credentials)."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from campaigns.providers import build_providers, close_providers, send_batch
from campaigns.providers.base import Channel, OutboundMessage, PermanentError, SendResult
from campaigns.providers.fcm import FcmProvider
from campaigns.providers.outbox_channel import OutboxProvider
from campaigns.providers.twilio_sms import TwilioSmsProvider
from geofence.service.runtime import bootstrap
from geofence.service.settings import Settings

AT = datetime(2026, 3, 14, 11, 30, tzinfo=UTC)


def msg(channel: Channel, n: int = 1, **kw) -> OutboundMessage:
    fields = {
        "delivery_id": f"d{n}", "idempotency_key": f"k{n}", "channel": channel,
        "to": "+33612345678" if channel is Channel.SMS else "fcm-token-abcdefghijklmnop",
        "body": "Paul: -20% STOP au 36123", "title": "Paul" if channel is Channel.PUSH else None,
        "data": {"campaign_id": "c1"}, "expires_at": AT + timedelta(hours=1),
    }
    return OutboundMessage(**(fields | kw))


def test_default_is_the_outbox_for_both_channels(settings):
    providers = build_providers(settings, now=lambda: AT)
    assert set(providers) == {"push", "sms"}
    assert all(isinstance(p, OutboxProvider) for p in providers.values())
    assert providers["push"].channel is Channel.PUSH
    assert providers["sms"].channel is Channel.SMS


def test_channels_wiring_registers_the_providers(settings, sqlite_engine):
    runtime = bootstrap(settings, sqlite_engine)
    assert isinstance(runtime.providers["sms"], OutboxProvider)


def test_first_listed_provider_wins_its_channel(tmp_path, monkeypatch):
    monkeypatch.setattr(FcmProvider, "from_settings", classmethod(lambda cls, s, **kw: _Stub(Channel.PUSH)))
    settings = Settings(channels=["fcm", "outbox"], outbox_dir=tmp_path)
    providers = build_providers(settings, now=lambda: AT)
    assert isinstance(providers["push"], _Stub)
    assert isinstance(providers["sms"], OutboxProvider)


class _Stub:
    name = "stub"

    def __init__(self, channel):
        self.channel = channel


def test_production_channels_build_real_sdk_providers(tmp_path):
    from tests.fakes.fcm_transport import AnonymousCredential

    settings = Settings(
        channels=["fcm", "twilio"],
        fcm={"project_id": "demo-test"},
        twilio={"account_sid": "AC" + "0" * 32, "auth_token": "t", "messaging_service_sid": "MG" + "1" * 32},
    )
    original = FcmProvider.from_settings.__func__
    try:
        FcmProvider.from_settings = classmethod(  # type: ignore[method-assign]
            lambda cls, s, **kw: original(cls, s, credential=AnonymousCredential(), **kw)
        )
        providers = build_providers(settings, now=lambda: AT)
    finally:
        FcmProvider.from_settings = classmethod(original)  # type: ignore[method-assign]
    assert isinstance(providers["push"], FcmProvider)
    assert isinstance(providers["sms"], TwilioSmsProvider)
    close_providers(providers)
    assert providers["push"].app is None


def test_unknown_provider_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown channel provider\(s\) \['pigeon'\]"):
        build_providers(Settings(channels=["outbox", "pigeon"]), now=lambda: AT)


def test_outbox_stores_and_prints_with_the_recipient_masked(tmp_path):
    out = io.StringIO()
    provider = OutboxProvider(Channel.SMS, outbox_dir=tmp_path, stream=out, clock=lambda: AT)
    result = provider.send(msg(Channel.SMS))
    assert result.provider_message_id.startswith("outbox-")
    assert result.accepted_at == AT
    (stored,) = provider.read()
    assert stored["body"] == "Paul: -20% STOP au 36123"
    assert stored["delivery_id"] == "d1"
    assert stored["to"] == "+33***78"
    raw = (tmp_path / "sms.jsonl").read_text()
    assert "+33612345678" not in raw
    assert "+33612345678" not in out.getvalue()
    assert "Paul: -20% STOP au 36123" in out.getvalue()
    assert json.loads(raw)["expires_at"] == "2026-03-14T12:30:00+00:00"


def test_outbox_refuses_an_expired_offer(tmp_path):
    provider = OutboxProvider(Channel.PUSH, outbox_dir=tmp_path, echo=False, clock=lambda: AT)
    with pytest.raises(PermanentError):
        provider.send(msg(Channel.PUSH, expires_at=AT - timedelta(seconds=1)))
    assert provider.read() == []


def test_send_batch_falls_back_to_one_by_one_and_keeps_errors_in_place(tmp_path):
    provider = OutboxProvider(Channel.PUSH, outbox_dir=tmp_path, echo=False, clock=lambda: AT)
    batch = [msg(Channel.PUSH, 1), msg(Channel.PUSH, 2, expires_at=AT), msg(Channel.PUSH, 3)]
    results = send_batch(provider, batch)
    assert [type(r) for r in results] == [SendResult, PermanentError, SendResult]
    assert [r["delivery_id"] for r in provider.read()] == ["d1", "d3"]


def test_the_default_channel_never_loads_the_sdks(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from campaigns.providers import build_providers\n"
        "from geofence.service import clock\n"
        "from geofence.service.settings import Settings\n"
        f"build_providers(Settings(outbox_dir={str(tmp_path)!r}), now=clock.now)\n"
        "print('firebase_admin' in sys.modules, 'twilio' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
