"""Channels benchmark: SMS content analysis, and FCM bursts through the real SDK on a loopback FCM fake.

    .venv/bin/python bench/bench_channels.py                      # defaults below
    .venv/bin/python bench/bench_channels.py --messages 2000 --chunks 50,100,500 --delay-ms 20

Figures printed:

- ``analyse()`` + ``append_legal_mentions()`` calls/s on realistic French offers (GSM-7 and UCS-2);
- FCM ``send_batch`` messages/s and peak concurrent requests for several ``send_each`` chunk sizes,
  against a local HTTP server that holds each reply ``--delay-ms`` (a stand-in for FCM's latency).
  The point is the trade-off: ``send_each`` opens one thread per message of a chunk, so the chunk size
  is both the concurrency and the thread count.
- Twilio ``send`` calls/s through the real SDK with an in-memory transport (SDK overhead only).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from campaigns.providers.base import Channel, OutboundMessage
from campaigns.providers.fcm import FcmProvider
from campaigns.providers.twilio_sms import TwilioSender, TwilioSmsProvider
from campaigns.sms_content import analyse, append_legal_mentions
from tests.fakes.fcm_transport import PROJECT, AnonymousCredential, FakeFcmServer, point_app_at
from tests.fakes.twilio_http import ACCOUNT_SID, AUTH_TOKEN, FakeTwilioHttpClient

AT = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BODIES = [
    "-20% sur toutes les viennoiseries jusqu'à 11h, sur présentation de ce SMS",
    "Votre café offert pour l'achat d'un croissant, aujourd'hui seulement ✨",
    "Happy hour 17h30-19h: 2 cocktails achetés = 1 offert. Carte fidélité ×2 points",
]


def bench_sms(n: int) -> None:
    started = time.perf_counter()
    for i in range(n):
        text = append_legal_mentions(BODIES[i % 3], advertiser="Boulangerie Paul", locale="fr-FR",
                                     sender="36123")
        analyse(text)
    elapsed = time.perf_counter() - started
    print(f"sms_content: {n / elapsed:,.0f} messages/s (mentions + analyse), {elapsed * 1e6 / n:.1f} µs each")


def push(i: int) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=f"d{i}", idempotency_key=f"k{i}", channel=Channel.PUSH, to=f"token-{i}",
        title="Boulangerie Paul", body=BODIES[i % 3], data={"campaign_id": "c1"},
        expires_at=AT + timedelta(hours=1),
    )


def bench_fcm(n: int, chunks: list[int], delay_ms: float) -> None:
    msgs = [push(i) for i in range(n)]
    for chunk in chunks:
        with FakeFcmServer(delay_s=delay_ms / 1000) as fcm:
            provider = FcmProvider(credential=AnonymousCredential(), project_id=PROJECT, batch_size=chunk,
                                   clock=lambda: AT)
            point_app_at(provider.app, fcm)
            started = time.perf_counter()
            results = provider.send_batch(msgs)
            elapsed = time.perf_counter() - started
            provider.close()
        ok = sum(1 for r in results if not isinstance(r, Exception))
        print(f"fcm send_each chunk={chunk:>3}: {n / elapsed:,.0f} msgs/s ({ok}/{n} ok), "
              f"peak {fcm.max_in_flight} concurrent requests, reply delay {delay_ms:g} ms")


def bench_twilio(n: int) -> None:
    provider = TwilioSmsProvider(
        account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, sender=TwilioSender(from_number="36123"),
        status_callback_url="https://geo.example.com/v1/deliveries/twilio/status",
        http_client=FakeTwilioHttpClient(), clock=lambda: AT,
    )
    msg = OutboundMessage(delivery_id="d", idempotency_key="k", channel=Channel.SMS, to="+33612345678",
                          body=BODIES[0], expires_at=AT + timedelta(hours=1))
    started = time.perf_counter()
    for _ in range(n):
        provider.send(msg)
    elapsed = time.perf_counter() - started
    print(f"twilio send (SDK only, in-memory transport): {n / elapsed:,.0f} msgs/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sms", type=int, default=50_000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--chunks", default="10,100,500")
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--twilio", type=int, default=2000)
    args = parser.parse_args()
    bench_sms(args.sms)
    bench_fcm(args.messages, [int(c) for c in args.chunks.split(",")], args.delay_ms)
    bench_twilio(args.twilio)


if __name__ == "__main__":
    main()
